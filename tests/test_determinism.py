"""The same bits on any thread count: the kernels and whole training runs on 1, 2, 3 and 4 threads.

Every reduction (conv dW and db, dense, the softmax cross-entropy loss) sums its terms in an order fixed
by the shapes alone, so the thread count never changes a result's bits.  PyTorch does not promise this
(pytorch issues 88718 and 2201).
"""
import hashlib

import numpy as np
import pytest

import fastconv
from fastconv import datasets, layers, ops, optimizers, runtime
from fastconv.nn.callbacks import Callback

THREADS = (1, 2, 3, 4)


@pytest.fixture
def restore_threads():
    old = runtime.get_num_threads()
    yield
    runtime.set_num_threads(old)


CONV_CASES = {
    "seed conv1 b5": ((5, 1, 28, 28), (16, 1, 8, 8), 1, 0),
    "seed conv2 b32": ((32, 16, 21, 21), (8, 16, 4, 4), 2, 0),
    "3x3 32->32 b8 (Winograd dx)": ((8, 32, 16, 16), (32, 32, 3, 3), 1, 1),
    "stem 5x5 s2 b4": ((4, 3, 32, 32), (32, 3, 5, 5), 2, 2),
    "3x3 64->64 b2 on 32x32 (blocked dW)": ((2, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    "keras conv1 b128": ((128, 1, 28, 28), (32, 1, 3, 3), 1, 0),
    "lenet conv1 b64": ((64, 1, 28, 28), (6, 1, 5, 5), 1, 2),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CONV_CASES))
@pytest.mark.parametrize("nonfinite", [False, True])
def test_conv_kernels_give_the_same_bits_on_any_thread_count(restore_threads, name, dtype, nonfinite):
    xs, ws, s, p = CONV_CASES[name]
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    if nonfinite:   # the im2col path
        x[0, 0, 3, 4] = np.inf
    dy = rng.standard_normal(ops.conv2d_output_shape(x.shape, w.shape, s, p)).astype(dtype)
    results = []
    for t in THREADS:
        runtime.set_num_threads(t)
        y = ops.conv2d_forward(x, w, rng.standard_normal(ws[0]).astype(dtype) * 0, stride=s, padding=p)
        dx, dw, db = ops.conv2d_backward(dy, x, w, stride=s, padding=p)
        results.append([a.tobytes() for a in (y, dx, dw, db)])
    for t, r in zip(THREADS[1:], results[1:]):
        differ = [k for k, (a, b) in enumerate(zip(r, results[0])) if a != b]
        assert not differ, f"{t} threads differ from 1 in outputs {differ} (y, dx, dw, db)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,K,U", [(1, 400, 120), (3, 333, 61), (8, 1000, 17), (2, 37, 1000)])
def test_small_batch_dense_gives_the_same_bits_on_any_thread_count(restore_threads, dtype, N, K, U):
    """The compiled dense loops (batch <= 8) split large layers between the threads: rows of w in groups
    of four, columns of dx; every element is still computed as on one thread."""
    from fastconv import _dense
    assert N <= _dense.SMALL_BATCH and U * K >= _dense.PARALLEL_MIN
    rng = np.random.default_rng(N * K + U)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((N, K), (U, K), (U,)))
    dy = rng.standard_normal((N, U)).astype(dtype)
    results = []
    for t in THREADS:
        runtime.set_num_threads(t)
        y = ops.dense_forward(x, w, b)
        dx, dw, db = ops.dense_backward(dy, x, w)
        results.append([a.tobytes() for a in (y, dx, dw, db)])
    assert all(r == results[0] for r in results[1:])


def _fit_digest(dtype, batch, threads):
    runtime.set_num_threads(threads)
    (x, y), _ = datasets.load_mnist()
    model = fastconv.Sequential([
        layers.Conv2D(8, 5, activation="relu"), layers.MaxPool2D(2), layers.Dropout(0.2),
        layers.Conv2D(16, 3, strides=2, activation="tanh"), layers.Flatten(),
        layers.Dense(32, activation="relu"), layers.Dense(10, activation="softmax")], dtype=dtype, seed=0)
    model.compile(optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x[:320] / 255.0, y[:320], batch_size=batch, epochs=2, verbose=0)
    return hashlib.sha256(model.params.tobytes()).hexdigest(), history.history


@pytest.mark.parametrize("dtype,batch", [("float32", 32), ("float64", 16), ("float32", 1)])
def test_training_runs_give_the_same_bits_on_any_thread_count(restore_threads, dtype, batch):
    runs = [_fit_digest(dtype, batch, t) for t in THREADS]
    assert all(r == runs[0] for r in runs[1:])


def test_fit_runs_numpys_blas_on_one_thread_and_restores_it(restore_threads):
    """The dense layers' BLAS calls run on one thread inside fit (threadpoolctl): no second thread pool
    against OpenMP's, and the same sums whatever BLAS thread count the process has."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastconv.nn.callbacks import Callback

    seen = []

    class BlasThreads(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.extend(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 784)).astype(np.float32), rng.integers(0, 10, 64)
    digests = []
    for blas_threads in (1, 2):
        with threadpoolctl.threadpool_limits(blas_threads, "blas"):
            before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
            model = fastconv.Sequential([layers.Dense(256, activation="relu"), layers.Dense(10, activation="softmax")],
                                        seed=0)
            model.compile("adam", "sparse_categorical_crossentropy")
            model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[BlasThreads()])
            after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
            assert before == after
        digests.append(hashlib.sha256(model.params.tobytes()).hexdigest())
    assert seen and set(seen) == {1}
    assert digests[0] == digests[1]


class _Switching(runtime.ThreadGovernor):
    """A governor that moves to the next of 1..4 threads after every step."""

    def tick(self, samples):
        self.threads = self.threads % 4 + 1
        self.report.append({"threads": self.threads, "action": "probe"})
        return True


def test_a_run_whose_thread_count_changes_every_step_gives_the_same_bits(restore_threads, monkeypatch):
    """fit's adaptive thread count (fastconv.runtime.ThreadGovernor) may change the count between any two
    steps; the run stays the bits of a one-thread run, and the count is restored after."""
    plain = _fit_digest("float32", 16, 1)
    monkeypatch.setattr(runtime, "ThreadGovernor", _Switching)
    runtime.set_adaptive_threads(True)
    switching = _fit_digest("float32", 16, 2)
    assert len(runtime.adaptive_threads_report()) > 20   # it did switch, at every step
    assert runtime.get_num_threads() == 2
    assert switching == plain


def test_without_threadpoolctl_fit_pins_numpys_own_openblas(restore_threads, monkeypatch):
    """Where threadpoolctl is not installed, fit pins the OpenBLAS NumPy bundles through its own thread
    functions (ctypes), and gives the count back after."""
    from fastconv.nn import training

    shim = training._OpenBLAS()
    if not shim.pairs:
        pytest.skip("NumPy's BLAS here is not a bundled OpenBLAS")
    monkeypatch.setattr(training, "_controller", shim)
    getter = shim.pairs[0][1]
    seen = []

    class Probe(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(getter())

    before = getter()
    shim.pairs[0][0](2)
    model = fastconv.Sequential([layers.Dense(64, activation="relu"), layers.Dense(3)], seed=0)
    model.compile(optimizers.SGD(0.01), "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((64, 32)), rng.standard_normal((64, 3)), batch_size=32, epochs=1, verbose=0,
              callbacks=[Probe()])
    assert seen == [1, 1]
    assert getter() == 2
    shim.pairs[0][0](before)
