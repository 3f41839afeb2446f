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
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
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
