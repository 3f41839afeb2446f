"""Datasets that work offline: an embedded real-MNIST subset, MNIST loaders for common formats, make_moons."""
import gzip
import os
import struct

import numpy as np

__all__ = ["load_mnist", "make_moons"]

_EMBEDDED = os.path.join(os.path.dirname(__file__), "data", "mnist_5k.npz")
_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
_NPZ_KEYS = [("x_train", "y_train", "x_test", "y_test"),            # Keras mnist.npz, our embedded file
             ("trainimages", "trainlabels", "testimages", "testlabels")]  # seed 000


def load_mnist(path=None):
    """Load MNIST as ``((x_train, y_train), (x_test, y_test))``: x uint8 (N, 28, 28), y int64 (N,).

    Parameters
    ----------
    path : None, an ``.npz`` file, or a directory of IDX files.
        None: the embedded subset of real MNIST (4,000 train / 1,000 test; see fastconv/data/README.md).
        ``.npz``: Keras's ``mnist.npz`` (``x_train`` ...) or seed 000's (``trainimages``, ``trainlabels``,
        ``testimages``, ``testlabels``).  Directory: the original IDX files, gzipped or not
        (``train-images-idx3-ubyte[.gz]`` ...).
    """
    if path is None:
        path = _EMBEDDED
    path = os.fspath(path)
    if os.path.isdir(path):
        arrays = {key: _read_idx(_find_idx(path, name)) for key, name in _IDX_NAMES.items()}
    elif os.path.isfile(path):
        arrays = _read_npz(path)
    else:
        raise FileNotFoundError(f"no MNIST data at {path!r} (expected an .npz file or a directory of IDX files)")
    out = []
    for split in ("train", "test"):
        x, y = _images(arrays[f"x_{split}"], f"x_{split}", path), _labels(arrays[f"y_{split}"], f"y_{split}", path)
        if len(x) != len(y):
            raise ValueError(f"{path}: {len(x)} {split} images but {len(y)} labels")
        out.append((x, y))
    return tuple(out)


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            for keys in _NPZ_KEYS:
                if set(keys) <= files:
                    return dict(zip(("x_train", "y_train", "x_test", "y_test"), (data[k] for k in keys)))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path!r} as an .npz file: {exc}") from exc
    raise ValueError(f"{path!r} has arrays {sorted(files)}; expected {list(_NPZ_KEYS[0])} or {list(_NPZ_KEYS[1])}")


def _find_idx(directory, name):
    for candidate in (name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz"):
        full = os.path.join(directory, candidate)
        if os.path.isfile(full):
            return full
    raise FileNotFoundError(f"{directory!r} has no {name} or {name}.gz")


def _read_idx(path):
    """Read one IDX file (the original MNIST format): magic 0x000008NN, dims as big-endian uint32, uint8 data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read IDX file {path!r}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path!r} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise ValueError(f"{path!r}: header says {dims} but holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _images(x, name, path):
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"{path}: {name} has shape {x.shape}; expected (N, 28, 28) or (N, 784)")
    if x.dtype != np.uint8:
        if x.dtype.kind not in "iuf" or x.size and (x.min() < 0 or x.max() > 255 or not np.all(x == np.round(x))):
            raise ValueError(f"{path}: {name} must hold integer pixel values 0..255, got dtype {x.dtype}")
        x = x.astype(np.uint8)
    return x


def _labels(y, name, path):
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind not in "iu" or y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{path}: {name} must hold integer class labels 0..9")
    return y.astype(np.int64)


def make_moons(n_samples=100, noise=0.0, seed=None, shuffle=True):
    """Two interleaving half circles (scikit-learn's ``make_moons`` definition).

    Returns ``x`` float64 (n_samples, 2) and ``y`` int64 (n_samples,): the outer moon (class 0) has
    ``n_samples // 2`` points on the upper unit half circle, the inner moon (class 1) the rest on
    ``(1 - cos t, 0.5 - sin t)``; Gaussian noise of std ``noise`` is added after shuffling.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if noise is None:
        noise = 0.0
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    x = np.vstack([np.append(np.cos(t_out), 1 - np.cos(t_in)), np.append(np.sin(t_out), 1 - np.sin(t_in) - 0.5)]).T
    y = np.hstack([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    if shuffle:
        order = rng.permutation(n_samples)
        x, y = x[order], y[order]
    if noise > 0:
        x = x + rng.normal(scale=noise, size=x.shape)
    return x, y
