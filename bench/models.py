"""Model benchmark: fit wall time of whole networks in fastconv vs PyTorch eager, same network, data and optimizer.

The models people write and train in mini-batches, plus the seed networks at batch 1 (issue 19's targets:
every batched model >= 1.5x PyTorch eager, batch 1 >= 8x):

- ``keras_convnet``   Keras's MNIST convnet: Conv32 3x3 ReLU, MaxPool 2, Conv64 3x3 ReLU, MaxPool 2, Flatten,
                      Dropout 0.5, Dense 10 softmax; batch 128, float32;
- ``lenet5_b64``      LeNet-5 with ReLU: Conv6 5x5 pad 2, MaxPool 2, Conv16 5x5, MaxPool 2, Flatten, Dense 120,
                      84, 10 softmax; batch 64, float32 (``lenet5_b1``: batch 1, float64);
- ``mlp_b64``         Dense 784-256-128-10, ReLU; batch 64, float32, on flattened images; timed twice for
                      fastconv: as fit runs it (NumPy's BLAS pinned to one thread) and with that pin taken
                      out, the BLAS on its own ``--threads`` threads beside OpenMP's;
- ``seed_cnn_b1``     seed 000's CNN (:func:`fastconv.zoo.seed_cnn`), batch 1, float64 (``seed_cnn_b32``: batch
                      32, float32);
- ``seed_cnn_bn_b1``  seed 000's CNN with BatchNormalization after each convolution, batch 1, float64 (issue
                      16's target: >= 5x PyTorch);
- ``moons_mlp``       seed 001's 2-12-6-1 MLP (:func:`fastconv.zoo.moons_mlp`) on make_moons (400 samples,
                      noise 0.2), full-batch SGD lr 0.01, binary cross-entropy, float64;
- ``keras_face``      Keras's MNIST convnet written with :mod:`fastconv.keras` and fed channels-last images
                      (N, 28, 28, 1), against the same network through the core API on (N, 1, 28, 28): the
                      face's cost (one transpose per fit call; target: at most 5% more time).  Both start from
                      the same weights and RNG states and use the same optimizer object type, so their
                      accuracies agree; PyTorch and Keras are not run for this row (``keras_convnet`` has them).

The MNIST models train on the embedded subset (4,000 images) with Adam lr 1e-3 (``torch.optim.Adam``) and
report test accuracy on its 1,000 test images, so a speed figure never hides a broken model.  PyTorch
starts from fastconv's initial weights (both use PyTorch's weight layouts, and both flatten (C, H, W) in C
order).  The machines are shared and their speed drifts, so fastconv and PyTorch run alternately for
``--rounds`` rounds, each a fresh model doing the same work, and each reports its fastest round (all
rounds are in the JSON); each fit starts after ``SETTLE_S`` idle, so thread pools left spinning by the
previous fit do not land on it.  Without PyTorch only fastconv's column is printed.  Keras 3 is timed
beside them when ``import keras`` works (on whatever backend it is configured with).  For every model
short of its target (all with ``--profile``) a training step is then profiled (:func:`step_profile`), so
that the table says what is short and where its time goes.
"""
import argparse
import json
import os
import sys
import time
from contextlib import contextmanager, nullcontext

import numpy as np

import fastconv
from fastconv import datasets, interop, layers, optimizers, zoo
from fastconv.benchmarks import machine_facts

BATCHED_TARGET = 1.5   # PyTorch time / fastconv time, batched models (issue 19)
BATCH1_TARGET = 8.0    # the same at batch 1
BN_BATCH1_TARGET = 5.0   # seed 000's CNN with batch norm, batch 1 (issue 16)
FACE_TARGET = 1.05     # fastconv.keras time / core time, same network (issue 16)
# Idle time before each timed fit: OpenBLAS's workers spin for about 2**28 cycles after their last call,
# and a fit started inside that window waits a scheduler time slice whenever it wants the other core.
SETTLE_S = 0.25


def keras_convnet(dtype="float32", seed=0):
    """Keras's MNIST convnet example (channels-first)."""
    return fastconv.Sequential([
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPool2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")], dtype=dtype, seed=seed)


def lenet5(dtype="float32", seed=0):
    """LeNet-5 with ReLU and max-pooling (the modern form): 28x28 -> 6@28x28 -> 16@10x10 -> 120 -> 84 -> 10."""
    return fastconv.Sequential([
        layers.Conv2D(6, 5, padding=2, activation="relu"), layers.MaxPool2D(2),
        layers.Conv2D(16, 5, activation="relu"), layers.MaxPool2D(2), layers.Flatten(),
        layers.Dense(120, activation="relu"), layers.Dense(84, activation="relu"),
        layers.Dense(10, activation="softmax")], dtype=dtype, seed=seed)


def mlp(dtype="float32", seed=0):
    """Dense 784-256-128-10 with ReLU."""
    return fastconv.Sequential([layers.Dense(256, activation="relu"), layers.Dense(128, activation="relu"),
                                layers.Dense(10, activation="softmax")], dtype=dtype, seed=seed)


def seed_cnn(dtype="float32", seed=0):
    return zoo.seed_cnn(dtype=dtype, seed=seed)


def seed_cnn_bn(dtype="float64", seed=0):
    """Seed 000's CNN with batch normalization after each convolution (before its ReLU)."""
    return fastconv.Sequential([
        layers.Conv2D(16, 8, kernel_initializer="glorot_normal"), layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Conv2D(8, 4, strides=2, kernel_initializer="he_normal"), layers.BatchNormalization(),
        layers.Activation("relu"), layers.Flatten(),
        layers.Dense(10, activation="softmax", kernel_initializer="he_normal")], dtype=dtype, seed=seed)


def moons(dtype="float64", seed=0):
    return zoo.moons_mlp("he_normal", seed, dtype=dtype)


# name -> what is trained: builder, data ("image", "flat", "moons"), batch size, dtype, optimizer, learning rate,
# (train samples, epochs) in a full and a --quick run
SETUPS = {
    "keras_convnet": dict(title="Keras MNIST convnet", build=keras_convnet, data="image", batch=128,
                          dtype="float32", optimizer="adam", lr=1e-3, full=(4000, 3), quick=(2000, 1)),
    "lenet5_b64": dict(title="LeNet-5 (ReLU)", build=lenet5, data="image", batch=64, dtype="float32",
                       optimizer="adam", lr=1e-3, full=(4000, 3), quick=(2000, 1)),
    "lenet5_b1": dict(title="LeNet-5 (ReLU)", build=lenet5, data="image", batch=1, dtype="float64",
                      optimizer="adam", lr=1e-3, full=(1000, 1), quick=(200, 1)),
    "mlp_b64": dict(title="MLP 784-256-128-10", build=mlp, data="flat", batch=64, dtype="float32",
                    optimizer="adam", lr=1e-3, full=(4000, 3), quick=(2000, 1), blas_free_variant=True),
    "seed_cnn_b1": dict(title="seed 000 CNN", build=seed_cnn, data="image", batch=1, dtype="float64",
                        optimizer="adam", lr=1e-3, full=(1000, 1), quick=(200, 1)),
    "seed_cnn_bn_b1": dict(title="seed 000 CNN + BatchNorm", build=seed_cnn_bn, data="image", batch=1,
                           dtype="float64", optimizer="adam", lr=1e-3, full=(1000, 1), quick=(200, 1),
                           target=BN_BATCH1_TARGET, keras=False),
    "seed_cnn_b32": dict(title="seed 000 CNN", build=seed_cnn, data="image", batch=32, dtype="float32",
                         optimizer="adam", lr=1e-3, full=(4000, 3), quick=(2000, 1)),
    "moons_mlp": dict(title="moons MLP 2-12-6-1", build=moons, data="moons", batch=400, dtype="float64",
                      optimizer="sgd", lr=0.01, full=(400, 2000), quick=(400, 300)),
    "keras_face": dict(title="Keras MNIST convnet, core API", build=keras_convnet, data="image", batch=128,
                       dtype="float32", optimizer="adam", lr=1e-3, full=(4000, 3), quick=(2000, 1), face=True),
}


# ----------------------------------------------------------------------------------------------- data
def load_data(kind, dtype, n_train):
    """``(x, y, x_test, y_test)`` for a setup: MNIST scaled to [0, 1] as (N, 1, 28, 28) or (N, 784), or moons."""
    if kind == "moons":
        x, y = datasets.make_moons(n_train, noise=0.2, seed=0)
        xt, yt = datasets.make_moons(100, noise=0.2, seed=10_000)
        return x.astype(dtype), y.astype(dtype), xt.astype(dtype), yt.astype(dtype)
    (x, y), (xt, yt) = datasets.load_mnist()
    x, y = x[:n_train], y[:n_train]
    shape = (-1, 1, 28, 28) if kind == "image" else (-1, 784)
    scale = np.dtype(dtype).type(255)
    return (x.reshape(shape) / scale).astype(dtype), y, (xt.reshape(shape) / scale).astype(dtype), yt


def _loss_name(setup):
    return "binary_crossentropy" if setup["data"] == "moons" else "sparse_categorical_crossentropy"


def _fastconv_model(setup, x, seed):
    model = setup["build"](dtype=setup["dtype"], seed=seed)
    opt = optimizers.Adam(setup["lr"]) if setup["optimizer"] == "adam" else optimizers.SGD(setup["lr"])
    model.compile(opt, _loss_name(setup), ["accuracy"])
    return model.build(x.shape[1:])


# ------------------------------------------------------------------------------------------- fastconv
def _blas_free():
    """fit's one-thread BLAS pin taken out until the ``with`` block ends: the BLAS runs on its own threads."""
    from fastconv.nn import training

    @contextmanager
    def unpinned():
        pin = training.single_threaded_blas
        training.single_threaded_blas = nullcontext
        try:
            yield
        finally:
            training.single_threaded_blas = pin

    return unpinned()


def fastconv_round(setup, data, epochs, seed=0, blas_free=False):
    """One fresh fastconv model trained with ``fit``: (µs per sample, test accuracy).  ``blas_free``: without
    fit's one-thread pin of NumPy's BLAS."""
    x, y, xt, yt = data
    model = _fastconv_model(setup, x, seed)
    time.sleep(SETTLE_S)
    with (_blas_free() if blas_free else nullcontext()):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=setup["batch"], epochs=epochs, verbose=0)
        seconds = time.perf_counter() - t0
    return seconds / (len(x) * epochs) * 1e6, float(model.evaluate(xt, yt)["accuracy"])


def _call_name(kernel, args):
    """``kernel-name (shape of its first array argument)`` for the profile table."""
    name = getattr(kernel, "__name__", type(kernel).__name__).lstrip("_")
    shape = next((a.shape for a in args if isinstance(a, np.ndarray)), None)
    return f"{name} {tuple(shape)}" if shape is not None else name


def step_profile(setup, data, budget_s=0.5, top=8):
    """Where a training step of ``setup`` goes, as ``fit`` runs it: the step with its optimizer update (min and
    median µs over repeated steps on random batches), the update alone, and each bound call of the
    compiled step timed on its own in the step's order (min µs over the repetitions), the ``top`` costliest
    first.  The model is trained on a few batches first, so that the kernels' one-time trials are done."""
    from fastconv.nn import training

    x, y = data[0], data[1]
    model = _fastconv_model(setup, x, 0)
    n = setup["batch"]
    model.fit(x[:4 * n], y[:4 * n], batch_size=n, epochs=1, verbose=0)
    step, update = model._step("train", n, y.dtype), model._update()
    calls = ([("forward",) + tuple(c) for c in step.forward] + [("loss",) + tuple(step.loss_call)]
             + [("backward",) + tuple(c) for c in step.backward])
    rng = np.random.default_rng(0)
    whole, best, best_update = [], [float("inf")] * len(calls), float("inf")
    with training.single_threaded_blas():
        t_end = time.perf_counter() + budget_s / 2
        while len(whole) < 5 or (time.perf_counter() < t_end and len(whole) < 2000):
            idx = rng.integers(0, len(x), n)
            t0 = time.perf_counter()
            step.train(x, y, idx)
            update()
            whole.append(time.perf_counter() - t0)
        for _ in range(len(whole)):
            idx = rng.integers(0, len(x), n)
            x.take(idx, axis=0, out=step.x, mode="clip")
            y.take(idx, axis=0, out=step.t, mode="clip")
            for i, (_, kernel, args) in enumerate(calls):
                t0 = time.perf_counter()
                kernel(*args)
                best[i] = min(best[i], time.perf_counter() - t0)
            t0 = time.perf_counter()
            update()
            best_update = min(best_update, time.perf_counter() - t0)
    rows = sorted(((best[i] * 1e6, phase, _call_name(kernel, args)) for i, (phase, kernel, args) in enumerate(calls)),
                  reverse=True)
    return {"step_us_min": min(whole) * 1e6, "step_us_median": float(np.median(whole)) * 1e6,
            "update_us": best_update * 1e6, "calls": len(calls), "steps": len(whole),
            "top": [{"us": us, "phase": phase, "call": call} for us, phase, call in rows[:top]]}


def keras_face_twin(model):
    """Keras's MNIST convnet written with :mod:`fastconv.keras` (channels-last), holding ``model``'s weights
    and RNG states (its core model has the same layers in the same order) and compiled like it."""
    from fastconv import keras
    from fastconv.keras import layers as kl

    face = keras.Sequential([
        keras.Input(shape=(28, 28, 1), dtype=model.dtype.name), kl.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        kl.MaxPooling2D(pool_size=(2, 2)), kl.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        kl.MaxPooling2D(pool_size=(2, 2)), kl.Flatten(), kl.Dropout(0.5), kl.Dense(10, activation="softmax")])
    core = face._core
    core.params[...] = model.params
    core.rng.bit_generator.state = model.rng.bit_generator.state
    for mine, theirs in zip(core.layers, model.layers):
        if isinstance(getattr(theirs, "rng", None), np.random.Generator):
            mine.rng.bit_generator.state = theirs.rng.bit_generator.state
    opt = type(model.optimizer)(**model.optimizer.get_config())
    face.compile(optimizer=opt, loss=model.loss.name, metrics=["accuracy"])
    return face


def face_round(setup, data, epochs, seed=0):
    """The same network and start as :func:`fastconv_round`, trained through fastconv.keras on channels-last
    images (the user's layout, converted by the face inside the timed fit): (µs per sample, test accuracy)."""
    x, y, xt, yt = data
    face = keras_face_twin(_fastconv_model(setup, x, seed))
    x_nhwc, xt_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(xt.transpose(0, 2, 3, 1))
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    face.fit(x_nhwc, y, batch_size=setup["batch"], epochs=epochs, verbose=0)
    seconds = time.perf_counter() - t0
    return seconds / (len(x) * epochs) * 1e6, float(face.evaluate(xt_nhwc, yt, verbose=0)[1])


# -------------------------------------------------------------------------------------------- PyTorch
def torch_twin(torch, model):
    """A ``torch.nn.Sequential`` with ``model``'s layers and current weights (:func:`fastconv.interop.to_torch`);
    the last softmax or sigmoid is left to the loss."""
    net = interop.to_torch(model)
    if isinstance(net[-1], (torch.nn.Softmax, torch.nn.Sigmoid)):
        net = net[:-1]   # cross_entropy / binary_cross_entropy_with_logits apply it
    return net


def torch_round(torch, setup, data, epochs, seed=0):
    """One PyTorch eager model, started from fastconv's initial weights for ``seed``: (µs per sample, accuracy)."""
    x, y, xt, yt = data
    net = torch_twin(torch, _fastconv_model(setup, x, seed))
    F = torch.nn.functional
    if setup["optimizer"] == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=setup["lr"])
    else:
        opt = torch.optim.SGD(net.parameters(), lr=setup["lr"])
    binary = setup["data"] == "moons"
    X, Xt = torch.from_numpy(x), torch.from_numpy(xt)
    Y = torch.from_numpy(y.reshape(-1, 1)) if binary else torch.from_numpy(y)
    loss_fn = F.binary_cross_entropy_with_logits if binary else F.cross_entropy
    torch.manual_seed(seed)   # dropout masks
    gen = np.random.default_rng(seed)
    n, batch = len(x), setup["batch"]
    net.train()
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(gen.permutation(n))
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    net.eval()
    with torch.no_grad():
        out = net(Xt).numpy()
    pred = (out[:, 0] > 0) if binary else out.argmax(1)
    return seconds / (n * epochs) * 1e6, float((pred == yt).mean())


# ---------------------------------------------------------------------------------------------- Keras
def keras_twin(keras, model):
    """A Keras 3 model with ``model``'s layers and current weights: channels-first convolutions, kernels
    transposed to Keras's (kh, kw, in, out) and (in, out) layouts, Flatten over (C, H, W) in C order."""
    kl, dtype = keras.layers, model.dtype.name
    stack, weights = [keras.Input(model.input_shape, dtype=dtype)], []
    for layer in model.layers:
        cfg = layer.get_config()
        if isinstance(layer, layers.Conv2D):
            if layer.padding != (0, 0):
                stack.append(kl.ZeroPadding2D(layer.padding, data_format="channels_first", dtype=dtype))
            stack.append(kl.Conv2D(cfg["filters"], cfg["kernel_size"], strides=cfg["strides"], use_bias=cfg["use_bias"],
                                   activation=cfg["activation"], data_format="channels_first", dtype=dtype))
            weights.append((stack[-1], layer.params["kernel"].transpose(2, 3, 1, 0), layer.params.get("bias")))
        elif isinstance(layer, layers.Dense):
            stack.append(kl.Dense(cfg["units"], activation=cfg["activation"], use_bias=cfg["use_bias"], dtype=dtype))
            weights.append((stack[-1], layer.params["kernel"].T, layer.params.get("bias")))
        elif isinstance(layer, layers.MaxPool2D):
            stack.append(kl.MaxPooling2D(cfg["pool_size"], cfg["strides"], data_format="channels_first", dtype=dtype))
        elif isinstance(layer, layers.Flatten):
            stack.append(kl.Flatten(data_format="channels_last", dtype=dtype))   # no transpose: C order
        elif isinstance(layer, layers.Dropout):
            stack.append(kl.Dropout(cfg["rate"], seed=model.seed, dtype=dtype))
        else:
            raise ValueError(f"no Keras twin for {type(layer).__name__}")
    net = keras.Sequential(stack)
    for kmod, w, b in weights:
        kmod.set_weights([np.ascontiguousarray(w)] + ([] if b is None else [np.asarray(b)]))
    return net


def keras_round(keras, setup, data, epochs, seed=0):
    """One Keras 3 model from fastconv's initial weights, trained with its ``fit`` (its first-call
    compilation included, as a user's fresh fit has it): (µs per sample, test accuracy)."""
    x, y, xt, yt = data
    net = keras_twin(keras, _fastconv_model(setup, x, seed))
    opt = (keras.optimizers.Adam(setup["lr"], epsilon=1e-8) if setup["optimizer"] == "adam"
           else keras.optimizers.SGD(setup["lr"]))
    net.compile(optimizer=opt, loss=_loss_name(setup), metrics=["accuracy"])
    if setup["data"] == "moons":
        y, yt = y.reshape(-1, 1), yt.reshape(-1, 1)
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    net.fit(x, y, batch_size=setup["batch"], epochs=epochs, verbose=0)
    seconds = time.perf_counter() - t0
    return seconds / (len(x) * epochs) * 1e6, float(net.evaluate(xt, yt, verbose=0)[1])


def import_frameworks(threads):
    """(torch or None, keras or None), with ``threads`` threads for PyTorch."""
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        import keras
    except ImportError:
        keras = None
    if keras is not None and keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)   # float64 layers stay float64
    return torch, keras


# ---------------------------------------------------------------------------------------------- runs
def bench_setup(name, setup, quick=False, rounds=3, torch=None, keras=None, sizes=None, profile=None):
    """Time one setup in alternating rounds; returns its rows (two for the MLP: pinned BLAS and not).
    ``profile``: add :func:`step_profile` to the default row -- True always, None (the default) when that
    row misses its target, False never."""
    n_train, epochs = sizes or (setup["quick"] if quick else setup["full"])
    data = load_data(setup["data"], setup["dtype"], n_train)
    free = setup.get("blas_free_variant", False)
    runs = {"fastconv": [], "fastconv_blas_free": [], "torch": [], "keras": [], "face": []}
    face = setup.get("face", False)
    for _ in range(max(1, rounds)):
        runs["fastconv"].append(fastconv_round(setup, data, epochs))
        if face:
            runs["face"].append(face_round(setup, data, epochs))
            continue
        if free:
            runs["fastconv_blas_free"].append(fastconv_round(setup, data, epochs, blas_free=True))
        if torch is not None:
            runs["torch"].append(torch_round(torch, setup, data, epochs))
        if keras is not None and setup.get("keras", True):
            runs["keras"].append(keras_round(keras, setup, data, epochs))
    target = setup.get("target", BATCH1_TARGET if setup["batch"] == 1 else BATCHED_TARGET)
    base = {"model": name, "title": setup["title"], "batch": min(setup["batch"], n_train), "dtype": setup["dtype"],
            "optimizer": setup["optimizer"], "samples": n_train, "epochs": epochs, "target": target}
    rows = []
    for key, variant in (("fastconv", "default"), ("fastconv_blas_free", "BLAS on its own threads")):
        if not runs[key]:
            continue
        us, acc = min(runs[key])
        row = dict(base, variant=variant, fastconv_us=us, fastconv_acc=acc,
                   fastconv_rounds_us=[r[0] for r in runs[key]])
        for other in ("torch", "keras"):
            if runs[other]:
                ous, oacc = min(runs[other])
                row.update({f"{other}_us": ous, f"{other}_acc": oacc, f"{other}_rounds_us": [r[0] for r in runs[other]],
                            f"{other}_over_fastconv": ous / us})
        if "torch_over_fastconv" in row:
            row["met"] = bool(row["torch_over_fastconv"] >= target)
        if runs["face"] and key == "fastconv":
            fus, facc = min(runs["face"])
            row.update(face_us=fus, face_acc=facc, face_rounds_us=[r[0] for r in runs["face"]],
                       face_over_core=fus / us, face_target=FACE_TARGET, face_met=bool(fus / us <= FACE_TARGET))
        rows.append(row)
    if len(rows) == 2:   # what fit's BLAS pin buys: the unpinned fit's time over the default one's
        rows[1]["free_over_default"] = rows[1]["fastconv_us"] / rows[0]["fastconv_us"]
    if rows and (profile or (profile is None and rows[0].get("met") is False)):
        rows[0]["profile"] = step_profile(setup, data)
    return rows


def _cell(row, key, fmt):
    return format(row[key], fmt) if key in row else "—"


def to_markdown(rows, facts=None):
    """The results table (markdown), one line per row, with the machine facts above it when given."""
    keras = any("keras_us" in r for r in rows)
    head = ["model", "batch", "dtype", "fastconv µs/sample", "PyTorch µs/sample", "PyTorch/fastconv", "target",
            "met", "fastconv acc", "PyTorch acc"]
    if keras:
        head += ["Keras µs/sample", "Keras/fastconv", "Keras acc"]
    lines = []
    if facts:
        lines += ["Machine: " + json.dumps(facts), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        title = r["title"] + ("" if r["variant"] == "default" else f", {r['variant']}")
        met = {True: "yes", False: "no"}.get(r.get("met"), "—")
        cells = [title, str(r["batch"]), r["dtype"], f"{r['fastconv_us']:,.1f}", _cell(r, "torch_us", ",.1f"),
                 _cell(r, "torch_over_fastconv", ".2f"), f"≥ {r['target']:g}x", met, f"{r['fastconv_acc']:.3f}",
                 _cell(r, "torch_acc", ".3f")]
        if keras:
            cells += [_cell(r, "keras_us", ",.1f"), _cell(r, "keras_over_fastconv", ".2f"),
                      _cell(r, "keras_acc", ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        if "face_us" in r:
            met = "met" if r["face_met"] else "not met"
            lines += ["", f"Keras MNIST convnet through fastconv.keras (channels-last input): "
                          f"{r['face_us']:,.1f} µs/sample (accuracy {r['face_acc']:.3f}) vs {r['fastconv_us']:,.1f} "
                          f"through the core API (accuracy {r['fastconv_acc']:.3f}): face/core "
                          f"{r['face_over_core']:.3f} (target ≤ {r['face_target']:g}: {met})."]
    for r in rows:
        if "profile" in r:
            pr = r["profile"]
            lines += ["", f"Where a training step of {r['title']} (batch {r['batch']}, {r['dtype']}) goes: "
                          f"{pr['step_us_min']:,.1f} µs min, {pr['step_us_median']:,.1f} median over "
                          f"{pr['steps']} steps, of which the optimizer update {pr['update_us']:,.1f}; the "
                          f"costliest of its {pr['calls']} kernel calls, each timed alone in the step's order "
                          "(min µs):",
                      "", "| µs | phase | call |", "|---|---|---|"]
            lines += [f"| {c['us']:,.1f} | {c['phase']} | {c['call']} |" for c in pr["top"]]
    for r in rows:
        if "free_over_default" in r:
            lines += ["", f"{r['title']}: with fit's one-thread pin of NumPy's BLAS taken out (the BLAS on its "
                          f"own threads beside OpenMP's), fastconv's fit took {r['free_over_default']:.2f}x "
                          "the default's time."]
    return "\n".join(lines) + "\n"


def run(names, quick=False, rounds=3, threads=2, torch=None, keras=None, sizes=None, progress=print, profile=None):
    """Run the named setups; returns ``{"machine": facts, "rows": [...]}``."""
    facts = machine_facts()
    facts.update(torch=torch.__version__ if torch is not None else "not installed",
                 keras=(f"{keras.__version__} on {keras.backend.backend()}" if keras is not None
                        else "not installed (skipped)"),
                 threads=threads, rounds=rounds, quick=quick)
    try:
        with open("/proc/loadavg") as f:
            facts["loadavg_at_start"] = f.read().split()[:3]
    except OSError:
        pass
    rows = []
    for name in names:
        t0 = time.perf_counter()
        new = bench_setup(name, SETUPS[name], quick, rounds, torch, keras, sizes, profile)
        rows += new
        if progress:
            for r in new:
                ratio = f"  PyTorch/fastconv {r['torch_over_fastconv']:.2f}" if "torch_over_fastconv" in r else ""
                if "face_over_core" in r:
                    ratio += f"  face/core {r['face_over_core']:.3f}"
                progress(f"{name:<14} {r['variant']:<14} fastconv {r['fastconv_us']:9.1f} µs/sample{ratio}"
                         f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    return {"machine": facts, "rows": rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per framework (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads for fastconv, PyTorch and the BLAS (default 2)")
    p.add_argument("--quick", action="store_true", help="fewer samples and epochs (under 2 minutes on 2 cores)")
    p.add_argument("--models", default=",".join(SETUPS),
                   help=f"comma-separated subset of: {', '.join(SETUPS)} (default: all)")
    p.add_argument("--out", default="bench/results/models.json", help="JSON output (default bench/results/models.json)")
    p.add_argument("--profile", action="store_true",
                   help="profile a training step of every model (default: of those short of their target)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown or not names:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(SETUPS)}")
    fastconv.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        pass
    torch, keras = import_frameworks(args.threads)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fastconv")
    measured = os.path.dirname(os.path.abspath(fastconv.__file__))
    if os.path.isdir(here) and not os.path.samefile(here, measured):
        print(f"note: measuring the fastconv in {measured}, not this checkout's {os.path.abspath(here)} "
              "(run with PYTHONPATH=. or pip install -e . to measure this one)", flush=True)
    result = run(names, args.quick, args.rounds, args.threads, torch, keras, profile=True if args.profile else None)
    print(json.dumps(result["machine"], indent=1))
    print(to_markdown(result["rows"]))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
