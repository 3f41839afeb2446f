"""The golden training runs (see tools/record_golden.py and test_golden.py).

Each run records the loss of every optimizer step (through the training loop's batch hook when the model
has one, else by wrapping the step) and the SHA-256 of the final flat parameter buffer.
"""
import hashlib
import platform

import numpy as np

import fastconv
from fastconv import datasets, layers, optimizers

CASES = ("seed_cnn_b1_f64", "seed_cnn_b32_f32", "moons_mlp", "pool_dropout_tanh_mse")


def build_key():
    """What the bits of a conv reduction depend on besides the code: the vector ISA the kernels were
    compiled for (their register tiles and FMA) and the L2 size (how the backward groups samples into
    chunks)."""
    from fastconv import _conv

    isa = _conv.BUILD_ISA
    return {"machine": platform.machine(), "isa": [isa] if isa != "baseline" else [],
            "l2": int(_conv.BACKWARD_CHUNK_BYTES)}


def _mnist(n_train):
    (x, y), _ = datasets.load_mnist()
    return (x[:n_train] / 255.0)[:, None], y[:n_train]


def seed_cnn(dtype, seed=0):
    return fastconv.Sequential([
        layers.Conv2D(16, 8, strides=1, activation="relu", kernel_initializer="glorot_normal"),
        layers.Conv2D(8, 4, strides=2, activation="relu", kernel_initializer="he_normal"),
        layers.Flatten(),
        layers.Dense(10, activation="softmax", kernel_initializer="he_normal"),
    ], dtype=dtype, seed=seed)


def _pool_model():
    return fastconv.Sequential([
        layers.Conv2D(4, 3, activation="tanh", kernel_initializer="glorot_uniform"),
        layers.MaxPool2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(10, activation="tanh", kernel_initializer="glorot_normal"),
    ], dtype="float64", seed=3)


def _record_losses(model, losses):
    """Collect each step's loss: wrap the model's step functions (as they were when recorded)."""
    cls = type(model)
    for attr in ("_run_program", "_forward_backward_set"):
        original = getattr(model, attr, None)
        if original is None:
            continue

        def wrapped(*args, _original=original, **kwargs):
            loss, out = _original(*args, **kwargs)
            losses.append(float(loss))
            return loss, out

        setattr(model, attr, wrapped)
    return cls


def run(name, threads):
    """Run case ``name`` on ``threads`` kernel threads; return (per-step losses, params SHA-256)."""
    previous = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        losses = []
        if name == "moons_mlp":
            x, y = datasets.make_moons(200, noise=0.2, seed=0)
            model = fastconv.Sequential([layers.Dense(12, activation="relu", kernel_initializer="he_normal"),
                                         layers.Dense(6, activation="relu", kernel_initializer="he_normal"),
                                         layers.Dense(1, activation="sigmoid")], dtype="float64", seed=0)
            model.compile(optimizers.SGD(learning_rate=0.1), "binary_crossentropy", ["accuracy"])
            _fit(model, x, y, losses, batch_size=16, epochs=5)
        elif name == "pool_dropout_tanh_mse":
            x, labels = _mnist(256)
            y = np.eye(10)[labels]
            model = _pool_model()
            model.compile(optimizers.Adam(1e-3), "mse", ["accuracy"])
            _fit(model, x, y, losses, batch_size=16, epochs=2)
        else:
            dtype = "float64" if name.endswith("f64") else "float32"
            batch = 1 if "_b1_" in name else 32
            x, y = _mnist(300 if batch == 1 else 640)
            model = seed_cnn(dtype)
            model.compile(optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
            _fit(model, x, y, losses, batch_size=batch, epochs=1 if batch == 1 else 2)
        return losses, hashlib.sha256(np.ascontiguousarray(model.params).tobytes()).hexdigest()
    finally:
        fastconv.set_num_threads(previous)


def _fit(model, x, y, losses, **kwargs):
    callbacks = _batch_loss_hook(model, losses)
    if callbacks is None:
        _record_losses(model, losses)
        model.fit(x, y, verbose=0, **kwargs)
    else:
        model.fit(x, y, verbose=0, callbacks=callbacks, **kwargs)


def _batch_loss_hook(model, losses):
    """A callback recording each batch's loss, for models whose fit takes callbacks; else None."""
    import inspect

    if "callbacks" not in inspect.signature(model.fit).parameters:
        return None
    from fastconv.nn.callbacks import Callback

    class Record(Callback):
        def on_batch_end(self, batch, logs=None):
            losses.append(float(logs["batch_loss"]))

    return [Record()]
