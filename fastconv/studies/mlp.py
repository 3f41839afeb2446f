"""What the MNIST MLP studies share: the embedded subset as flat vectors and a step-budget training loop."""
import functools

import numpy as np

from .. import datasets
from ..nn.training import single_threaded_blas

__all__ = ["mnist_flat", "train_steps", "accuracy", "diverged_note", "BATCH"]

BATCH = 64  # images per optimizer step in every MLP study


@functools.lru_cache(maxsize=4)
def mnist_flat(standardize=False, data=None):
    """The MNIST images as float32 rows of 784 pixels, read once per worker process.

    ``standardize=False``: pixels / 255, in [0, 1].  ``True``: (pixels - m) / s with the mean m and standard
    deviation s of all training pixels, so the inputs have mean 0 and variance 1 as the self-normalizing
    analysis assumes.  Returns ``((x_train, y_train), (x_test, y_test))``; callers must not write into them.
    """
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(data)
    x_train = x_train.reshape(len(x_train), -1).astype(np.float64) / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float64) / 255.0
    if standardize:
        m, s = x_train.mean(), x_train.std()
        x_train, x_test = (x_train - m) / s, (x_test - m) / s
    out = []
    for a in (x_train, x_test):
        a = a.astype(np.float32)
        a.flags.writeable = False
        out.append(a)
    return (out[0], y_train), (out[1], y_test)


def train_steps(model, x, y, steps, seed, batch=BATCH, record_every=10):
    """``steps`` optimizer steps of ``batch`` images by ``model.train_on_batch``; returns the losses.

    The images are visited in a random order drawn from ``seed`` (a fresh permutation at every pass; the
    last partial batch of a pass is dropped), independent of the model's own seed.  The returned list has
    the mean training-batch loss of each window of ``record_every`` steps (the last window may be shorter);
    a non-finite loss (a diverged run) is kept as NaN.  NumPy's BLAS runs on one thread, so the results do
    not depend on how many threads it would otherwise have (fastconv's kernels are bit-identical anyway).
    """
    rng = np.random.default_rng([seed, 17])
    per_pass = len(x) // batch
    losses, window, order = [], [], None
    with single_threaded_blas(), np.errstate(all="ignore"):  # a diverging setting overflows: that is data
        for step in range(steps):
            k = step % per_pass
            if k == 0:
                order = rng.permutation(len(x))
            idx = order[k * batch:(k + 1) * batch]
            loss = float(model.train_on_batch(x[idx], y[idx])["loss"])
            window.append(loss if np.isfinite(loss) else np.nan)  # inf too: a mean of inf and NaN is NaN
            if len(window) == record_every or step == steps - 1:
                losses.append(float(np.mean(window)))
                window = []
    return losses


def diverged_note(rows, key):
    """A sentence naming the settings (``row[key]``) with runs whose loss became NaN or inf, or "" if none."""
    bad = {}
    for r in rows:
        if r["diverged"]:
            bad[r[key]] = bad.get(r[key], 0) + 1
    if not bad:
        return ""
    return ("Diverged runs (the training loss became NaN or infinite; their predictions count as wrong, so their "
            "accuracy is 0%): " + ", ".join(f"{k}: {n}" for k, n in bad.items()) + ".")


def accuracy(model, x, y):
    """Accuracy of ``model`` on (x, y) in inference mode, BLAS on one thread; NaN outputs count as wrong."""
    with single_threaded_blas(), np.errstate(all="ignore"):
        out = model.predict(x)
    pred = np.where(np.isfinite(out).all(axis=1), out.argmax(axis=1), -1)
    return float(np.mean(pred == y))
