"""Per-layer cost of a training step at batch 1, where the kernels' arithmetic is close to nothing.

For three families of models (1x1 convolutions with ReLU; Conv + MaxPool + Dropout blocks; Dense tanh
layers with MSE) at several depths, it times ``fit`` per step and the same step's bound kernel calls
replayed in a bare loop.  The slope over depth of the fit time is what one more layer costs a step;
(fit - bare calls) / layers is the model's own Python per layer (the training loop, the step runner).
Figures go to docs/performance.md; ``--out`` writes JSON.
"""
import argparse
import json
import time

import numpy as np

import fastconv
from fastconv import layers, optimizers

DEPTHS = (2, 4, 8, 16)


def conv1x1(depth):
    """``depth`` 1x1 conv layers (4 channels, ReLU) on 4x4 inputs, then Flatten and Dense 10."""
    return ([layers.Conv2D(4, 1, activation="relu") for _ in range(depth)]
            + [layers.Flatten(), layers.Dense(10, activation="softmax")], (1, 4, 4), "sparse_categorical_crossentropy")


def pool_dropout(depth):
    """``depth`` // 2 blocks of Conv 3x3 'same' (ReLU), MaxPool 1x1 and Dropout 0.1 (3 layers a block) on 6x6."""
    stack = []
    for _ in range(max(1, depth // 2)):
        stack += [layers.Conv2D(2, 3, padding="same", activation="relu"), layers.MaxPool2D(1), layers.Dropout(0.1)]
    return stack + [layers.Flatten(), layers.Dense(10, activation="softmax")], (1, 6, 6), \
        "sparse_categorical_crossentropy"


def dense_tanh(depth):
    """``depth`` Dense 8 tanh layers, then Dense 4 with MSE."""
    return [layers.Dense(8, activation="tanh") for _ in range(depth)] + [layers.Dense(4)], (8,), "mse"


FAMILIES = {"1x1 conv + ReLU": conv1x1, "conv + maxpool + dropout": pool_dropout, "dense tanh + MSE": dense_tanh}


def _data(shape, loss, n, rng):
    x = rng.standard_normal((n,) + shape)
    y = rng.integers(0, 10, n) if loss.startswith("sparse") else rng.standard_normal((n, 4))
    return x, y


def measure(family, depth, steps=400, rounds=5):
    """(fit us/step, bare calls us/step, layers) for one model at batch 1."""
    stack, shape, loss = FAMILIES[family](depth)
    model = fastconv.Sequential(stack, dtype="float64", seed=0)
    model.compile(optimizers.SGD(1e-3), loss)
    model.build(shape)
    x, y = _data(shape, loss, steps, np.random.default_rng(0))
    model.fit(x[:50], y[:50], batch_size=1, verbose=0)       # compile the step, settle the thread trials
    step = model._step("train", 1, model.loss.targets(y[:1], 1, model.output_shape, model.dtype).dtype)
    update = model._update()
    calls = step.forward + [step.loss_call] + step.backward
    fit_best = bare_best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=1, verbose=0)
        fit_best = min(fit_best, (time.perf_counter() - t0) / steps)
        t0 = time.perf_counter()
        for _ in range(steps):
            for kernel, args in calls:
                kernel(*args)
            update()
        bare_best = min(bare_best, (time.perf_counter() - t0) / steps)
    return fit_best * 1e6, bare_best * 1e6, len(model.layers)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="kernel threads (default 1: batch 1 has no work to split)")
    p.add_argument("--out", help="write the figures as JSON")
    args = p.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    results = {}
    print(f"{'model':28} {'layers':>6} {'fit us/step':>12} {'bare calls':>11} {'model Python/layer':>19}")
    for family in FAMILIES:
        rows = []
        for depth in DEPTHS:
            fit_us, bare_us, n_layers = measure(family, depth)
            rows.append({"layers": n_layers, "fit_us": fit_us, "bare_us": bare_us,
                         "python_per_layer_us": (fit_us - bare_us) / n_layers})
            print(f"{family:28} {n_layers:6d} {fit_us:12.2f} {bare_us:11.2f} {rows[-1]['python_per_layer_us']:19.3f}")
        slope = np.polyfit([r["layers"] for r in rows], [r["fit_us"] for r in rows], 1)[0]
        print(f"{family:28} one more layer costs a step {slope:.2f} us (kernel calls included)")
        results[family] = {"rows": rows, "us_per_layer": slope}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
