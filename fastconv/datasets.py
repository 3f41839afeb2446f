"""Datasets that work offline: an embedded real-MNIST subset, MNIST loaders for common formats, make_moons."""
import gzip
import math
import numbers
import os
import struct
import tokenize
import zipfile
import zlib

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

    Raises
    ------
    FileNotFoundError
        when ``path`` does not exist, or a directory lacks one of the four IDX files.
    ValueError
        naming the file, for one that cannot be read as MNIST: not an ``.npz``, truncated or corrupted,
        a bad IDX header, or arrays of the wrong shape or values.  Files are read without pickle, and no
        array is allocated larger than the data the file actually holds.
    """
    if path is None:
        path = _EMBEDDED
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be None, a str or an os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a text path, got {path!r}")
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


# what a damaged zip or gzip stream raises (NotImplementedError: an unknown compression method)
_STREAM_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, NotImplementedError)


def _read_npz(path):
    try:
        with zipfile.ZipFile(path) as zf:
            members = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
            for keys in _NPZ_KEYS:
                if set(keys) <= set(members):
                    return {name: _read_npy_member(zf, members[key], path)
                            for name, key in zip(("x_train", "y_train", "x_test", "y_test"), keys)}
    except _STREAM_ERRORS as exc:
        raise ValueError(f"cannot read {path!r} as an .npz file: {exc}") from exc
    raise ValueError(f"{path!r} has arrays {sorted(members)}; expected {list(_NPZ_KEYS[0])} or {list(_NPZ_KEYS[1])}")


def read_npy_header(f):
    """``(shape, fortran_order, dtype)`` from the header of the ``.npy`` stream ``f``, which it leaves at the
    data; never unpickles.  A malformed header or an unknown version is a ValueError (a stream that ends
    early raises EOFError); ``fastconv.nn.saving`` reads model files with it too."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
    except (ValueError, TypeError, SyntaxError, tokenize.TokenError) as exc:
        raise ValueError(str(exc)) from exc
    raise ValueError(f".npy format version {version} is not supported")


def _read_npy_member(zf, info, path):
    """One ``.npy`` member of an open zip, read without pickle; its header must match its stored size."""
    where = f"{path!r} member {info.filename!r}"
    if info.flag_bits & 0x1:
        raise ValueError(f"{where} is encrypted")
    with zf.open(info) as f:
        try:
            shape, fortran_order, dtype = read_npy_header(f)
        except ValueError as exc:
            raise ValueError(f"{where} is not a valid .npy array ({exc})") from exc
        if dtype.hasobject:
            raise ValueError(f"{where} holds Python objects (pickled data), which load_mnist never loads")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise ValueError(f"{where} declares shape {shape} of {dtype} ({nbytes:,} bytes) but holds "
                             f"{info.file_size - f.tell():,} bytes")
        data = _read_exactly(f, nbytes, where)
    return np.frombuffer(data, dtype=dtype, count=math.prod(shape)).reshape(shape, order="F" if fortran_order else "C")


def _read_exactly(f, nbytes, where):
    """``nbytes`` from ``f`` and then its end, read in pieces: memory grows with the data actually there,
    not with what a header claims."""
    data = bytearray()
    while len(data) < nbytes:
        piece = f.read(min(1 << 22, nbytes - len(data)))
        if not piece:
            raise ValueError(f"{where} is truncated: its header promises {nbytes:,} bytes of data, it holds "
                             f"{len(data):,}")
        data += piece
    if f.read(1):
        raise ValueError(f"{where} holds more than the {nbytes:,} bytes of data its header describes")
    return data


def _find_idx(directory, name):
    for candidate in (name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz"):
        full = os.path.join(directory, candidate)
        if os.path.isfile(full):
            return full
    raise FileNotFoundError(f"{directory!r} has no {name} or {name}.gz")


def _read_idx(path):
    """Read one IDX file (the original MNIST format): magic 0x000008NN (NN = ndim, 1 to 3 here), the dims as
    big-endian uint32, then uint8 data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:3] != b"\0\0\x08":
                raise ValueError(f"{path!r} is not an unsigned-byte IDX file (bad magic number)")
            ndim = magic[3]
            if not 1 <= ndim <= 3:
                raise ValueError(f"{path!r}: IDX header gives {ndim} dimensions; MNIST files have 1 (labels) "
                                 "or 3 (images)")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise ValueError(f"{path!r}: IDX header is truncated ({ndim} dimensions need {4 * ndim} bytes)")
            dims = struct.unpack(">" + "I" * ndim, raw_dims)
            data = _read_exactly(f, math.prod(dims), f"{path!r} (IDX dims {dims})")
    except _STREAM_ERRORS as exc:
        raise ValueError(f"cannot read IDX file {path!r}: {exc}") from exc
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


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

    Parameters
    ----------
    n_samples : int >= 1.
    noise : finite real >= 0, or None (no noise).
    seed : None, an int >= 0, or a ``numpy.random.Generator`` (anything ``numpy.random.default_rng`` takes).
    shuffle : bool.

    Examples
    --------
    >>> x, y = make_moons(200, noise=0.1, seed=0)
    >>> x.shape, y.dtype
    ((200, 2), dtype('int64'))
    """
    if isinstance(n_samples, (bool, np.bool_)) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    n_samples = int(n_samples)
    if noise is None:
        noise = 0.0
    if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, numbers.Real):
        raise TypeError(f"noise must be a real number (the noise's standard deviation), got {noise!r}")
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
    rng = _rng(seed)
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


def _rng(seed):
    """``seed`` as a Generator (a Generator is used as it is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be None, an int >= 0 or a numpy.random.Generator, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except TypeError as exc:
        raise TypeError(f"seed must be None, an int >= 0 or a numpy.random.Generator, got {seed!r}") from exc
    except ValueError as exc:
        raise ValueError(f"seed must be None, an int >= 0 or a numpy.random.Generator, got {seed!r}") from exc
