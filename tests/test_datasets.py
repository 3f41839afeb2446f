"""Loaders (embedded subset, each file format made on the fly) and make_moons."""
import gzip
import struct

import numpy as np
import pytest

from fastconv.datasets import load_mnist, make_moons


def test_embedded_subset_is_real_mnist_shaped():
    (xt, yt), (xs, ys) = load_mnist()
    assert xt.shape == (4000, 28, 28) and xs.shape == (1000, 28, 28)
    assert xt.dtype == np.uint8 and yt.dtype == np.int64
    assert np.bincount(np.concatenate([yt, ys])).tolist() == [500] * 10
    assert 0.08 < xt.mean() / 255 < 0.2  # MNIST's mean intensity is ~0.13
    assert len(set(map(bytes, xt[:200]))) == 200  # no duplicate images


def _fake(n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test))


def _check(loaded, fake):
    (xt, yt), (xs, ys) = loaded
    np.testing.assert_array_equal(xt, fake[0])
    np.testing.assert_array_equal(yt, fake[1])
    np.testing.assert_array_equal(xs, fake[2])
    np.testing.assert_array_equal(ys, fake[3])


def test_keras_npz(tmp_path):
    fake = _fake()
    np.savez(tmp_path / "mnist.npz", x_train=fake[0], y_train=fake[1], x_test=fake[2], y_test=fake[3])
    _check(load_mnist(tmp_path / "mnist.npz"), fake)


def test_seed000_npz_with_flat_float_images(tmp_path):
    fake = _fake()
    np.savez(tmp_path / "mndata.npz", trainimages=fake[0].reshape(6, 784).astype(np.float64), trainlabels=fake[1],
             testimages=fake[2], testlabels=fake[3])
    _check(load_mnist(str(tmp_path / "mndata.npz")), fake)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files(tmp_path, gz):
    fake = _fake()
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for name, arr in zip(names, fake):
        arr = np.asarray(arr, dtype=np.uint8)
        raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
        if gz:
            with gzip.open(tmp_path / (name + ".gz"), "wb") as f:
                f.write(raw)
        else:
            (tmp_path / name).write_bytes(raw)
    _check(load_mnist(tmp_path), fake)


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no MNIST data"):
        load_mnist(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="cannot read"):
        load_mnist(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="expected"):
        load_mnist(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(tmp_path)
    (tmp_path / "idx").mkdir()
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (tmp_path / "idx" / name).write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="magic"):
        load_mnist(tmp_path / "idx")
    fake = _fake()
    np.savez(tmp_path / "bad.npz", x_train=fake[0], y_train=fake[1] + 20, x_test=fake[2], y_test=fake[3])
    with pytest.raises(ValueError, match="labels 0..9"):
        load_mnist(tmp_path / "bad.npz")


def test_make_moons_matches_definition():
    x, y = make_moons(8, shuffle=False)
    t = np.linspace(0, np.pi, 4)
    np.testing.assert_allclose(x[:4], np.c_[np.cos(t), np.sin(t)])
    np.testing.assert_allclose(x[4:], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    assert y.tolist() == [0] * 4 + [1] * 4
    a = make_moons(400, noise=0.2, seed=3)
    b = make_moons(400, noise=0.2, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (400, 2) and np.bincount(a[1]).tolist() == [200, 200]
    assert 0.15 < np.std(a[0] - make_moons(400, seed=3)[0]) < 0.25


def test_make_moons_matches_sklearn_without_noise():
    sklearn = pytest.importorskip("sklearn.datasets")
    xs, ys = sklearn.make_moons(11, shuffle=False)
    x, y = make_moons(11, shuffle=False)
    np.testing.assert_allclose(x, xs, atol=1e-15)
    np.testing.assert_array_equal(y, ys)


def test_make_moons_bad_input():
    with pytest.raises(ValueError, match="n_samples"):
        make_moons(0)
    with pytest.raises(ValueError, match="noise"):
        make_moons(10, noise=-1)


# ------------------------------------------------------------------ damaged files: a ValueError naming the file

def _keras_npz(path, compressed):
    fake = _fake()
    save = np.savez_compressed if compressed else np.savez
    save(path, x_train=fake[0], y_train=fake[1], x_test=fake[2], y_test=fake[3])
    return fake


def _idx(arr, ndim=None):
    arr = np.asarray(arr, dtype=np.uint8)
    ndim = arr.ndim if ndim is None else ndim
    return bytes([0, 0, 8, ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def _idx_dir(directory, images=None, gz=False):
    """The four IDX files of _fake(), with the train images replaced by ``images`` (raw bytes) if given."""
    directory.mkdir(exist_ok=True)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for name, arr in zip(names, _fake()):
        raw = _idx(arr)
        if name.startswith("train-images") and images is not None:
            raw = images
        if gz:
            raw = gzip.compress(raw)
        (directory / (name + (".gz" if gz else ""))).write_bytes(raw)
    return directory


def _refused(path, match=None):
    with pytest.raises(ValueError, match=match) as info:
        load_mnist(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_npz(tmp_path, compressed):
    _keras_npz(tmp_path / "full.npz", compressed)
    raw = (tmp_path / "full.npz").read_bytes()
    for n in range(0, len(raw), 29):   # main: zipfile.BadZipFile, EOFError
        (tmp_path / "cut.npz").write_bytes(raw[:n])
        _refused(tmp_path / "cut.npz")


@pytest.mark.parametrize("compressed", [False, True])
def test_bit_flipped_npz_is_refused_or_harmless(tmp_path, compressed):
    fake = _keras_npz(tmp_path / "full.npz", compressed)
    raw = (tmp_path / "full.npz").read_bytes()
    for i in range(0, len(raw), 5):
        data = bytearray(raw)
        data[i] ^= 0x04
        (tmp_path / "flipped.npz").write_bytes(bytes(data))
        try:
            loaded = load_mnist(tmp_path / "flipped.npz")
        except ValueError as exc:
            assert str(tmp_path / "flipped.npz") in str(exc)
            continue
        _check(loaded, fake)  # the flip hit zip metadata that is not read


def test_npz_member_header_claiming_more_than_it_holds(tmp_path):
    import io
    import zipfile

    fake = _fake()
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (2 ** 40, 28, 28)})
    with zipfile.ZipFile(tmp_path / "crafted.npz", "w") as zf:
        zf.writestr("x_train.npy", buffer.getvalue() + fake[0].tobytes())  # main: 784 TiB MemoryError
        for name, arr in (("y_train", fake[1]), ("x_test", fake[2]), ("y_test", fake[3])):
            out = io.BytesIO()
            np.save(out, arr)
            zf.writestr(name + ".npy", out.getvalue())
    _refused(tmp_path / "crafted.npz", "declares shape")


def test_pickled_npz_member_is_refused(tmp_path):
    fake = _fake()
    np.savez(tmp_path / "p.npz", x_train=np.array([object()] * 3), y_train=fake[1], x_test=fake[2], y_test=fake[3])
    _refused(tmp_path / "p.npz", "Python objects")


def test_idx_header_with_200_dimensions(tmp_path):
    _refused(_idx_dir(tmp_path / "idx", images=bytes([0, 0, 8, 200]) + bytes(12)), "200 dimensions")  # struct.error
    _refused(_idx_dir(tmp_path / "idx", images=bytes([0, 0, 8, 3, 0, 0])), "header is truncated")


def test_idx_data_shorter_or_longer_than_its_header(tmp_path):
    full = _idx(_fake()[0])
    _refused(_idx_dir(tmp_path / "short", images=full[:-1]), "truncated")
    _refused(_idx_dir(tmp_path / "long", images=full + b"\0"), "more than")
    huge = bytes([0, 0, 8, 3]) + struct.pack(">III", 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1) + bytes(10)
    _refused(_idx_dir(tmp_path / "huge", images=huge, gz=True), "truncated")


def test_truncated_and_corrupted_gz(tmp_path):
    directory = _idx_dir(tmp_path / "gz", gz=True)
    target = directory / "train-images-idx3-ubyte.gz"
    raw = target.read_bytes()
    for n in (len(raw) // 2, len(raw) - 5, 12):   # main: EOFError
        target.write_bytes(raw[:n])
        _refused(target)
    corrupted = bytearray(raw)
    corrupted[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(corrupted))
    _refused(target)


def test_load_mnist_path_type():
    with pytest.raises(TypeError, match="path must be"):
        load_mnist(123)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(noise=float("nan")), ValueError, "noise"),     # main: silently no noise
    (dict(noise=float("inf")), ValueError, "noise"),
    (dict(noise="a"), TypeError, "noise"),               # main: a raw comparison TypeError
    (dict(noise=True), TypeError, "noise"),
    (dict(n_samples=2.5), ValueError, "n_samples"),
    (dict(n_samples="10"), ValueError, "n_samples"),
    (dict(n_samples=True), ValueError, "n_samples"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed="a"), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"),
    (dict(shuffle="no"), TypeError, "shuffle"),
])
def test_make_moons_validates_every_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_moons(**{"n_samples": 10, **kwargs})


def test_make_moons_accepts_numpy_scalars_and_generators():
    a = make_moons(np.int64(10), noise=np.float32(0.1), seed=np.random.default_rng(0), shuffle=np.bool_(True))
    b = make_moons(10, noise=0.1, seed=0)
    assert a[0].shape == (10, 2)
    np.testing.assert_array_equal(a[1], b[1])
