"""Seeds 003/004: activation std and weight-gradient norm per layer of a deep plain MLP at initialization."""
import os

import numpy as np

from ..nn import initializers, layers
from ..nn.model import Sequential
from .outputs import write_outputs
from .plots import GRID_ALPHA, pyplot, save_figure
from .sweep import run_sweep

__all__ = ["DEPTH_INITS", "depth_run", "depth"]

DEPTH_INITS = {
    "N(0, 1)": initializers.RandomNormal(0.0, 1.0),
    "N(0, 0.01^2)": initializers.RandomNormal(0.0, 0.01),
    "LeCun 1/D": initializers.lecun_normal(),
    "Glorot": initializers.glorot_normal(),
    "He": initializers.he_normal(),
}


def depth_run(init_name, activation, seed, n_layers=20, width=256, batch=512):
    """Per-layer activation std and weight-gradient norm of a plain MLP at initialization.

    The input is N(0, 1) of shape ``(batch, width)``; the backward pass starts from a random output gradient
    N(0, 1) / batch (no loss), so the gradient norms show how the layers alone scale a signal.
    """
    rng = np.random.default_rng(seed)
    model = Sequential([layers.Dense(width, activation=activation, kernel_initializer=DEPTH_INITS[init_name])
                        for _ in range(n_layers)], dtype="float64", seed=seed)
    model.build((width,))
    x = rng.standard_normal((batch, width))
    output_gradient = rng.standard_normal((batch, width)) / batch
    with np.errstate(all="ignore"):  # the exploding and collapsing settings may overflow or underflow
        outputs = model.backpropagate(x, output_gradient)
        stds = [float(out.std()) for out in outputs]
        norms = [_frobenius_norm(layer.grads["kernel"]) for layer in model.layers]
    return {"init": init_name, "activation": activation, "seed": seed, "last_std": stds[-1],
            "first_grad_norm": norms[0], "stds": stds, "grad_norms": norms}


def _frobenius_norm(a):
    """``sqrt(sum(a**2))`` by NumPy's pairwise sum: np.linalg.norm calls BLAS's dot, whose result depends
    on the BLAS thread count, so a sweep's workers (fewer threads each) would disagree in the last bits."""
    return float(np.sqrt(np.sum(np.square(a))))


def depth(out="study-depth", seeds=3, jobs=1, scheduler=None, n_layers=20, width=256, progress=True):
    """Seeds 003/004: activation std and gradient norm per layer of a deep plain MLP at initialization.

    Returns the list of per-run results and writes depth.md/.json/.csv and depth.png into ``out``.
    """
    tasks = [dict(init_name=name, activation=act, seed=s, n_layers=n_layers, width=width)
             for act in ("relu", "tanh") for name in DEPTH_INITS for s in range(seeds)]
    rows = run_sweep(depth_run, tasks, jobs, scheduler, progress, desc="depth")
    lines = [f"# depth: {n_layers} x {width} MLP at initialization, {seeds} seeds", "",
             "Standard deviation of the last layer's activations (mean over seeds; input N(0, 1)):", "",
             "| initializer | ReLU | tanh |", "|---|---|---|"]
    for name in DEPTH_INITS:
        cells = []
        for act in ("relu", "tanh"):
            vals = [r["last_std"] for r in rows if r["init"] == name and r["activation"] == act]
            cells.append(f"{np.mean(vals):.3g}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += ["", "LeCun (std = 1/sqrt(fan_in)) and Glorot (std = sqrt(2/(fan_in + fan_out))) coincide for these "
              f"square {width}x{width} layers. He keeps ReLU activations O(1); N(0, 1) explodes and N(0, 0.01^2) "
              "collapses."]
    write_outputs(out, "depth", rows, "\n".join(lines) + "\n")
    _plot(rows, out, seeds, n_layers, width)
    return rows


def _plot(rows, out, seeds, n_layers, width):
    """depth.png: activation std (top) and weight-gradient norm (bottom) per layer, ReLU and tanh side by side."""
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for col, act in enumerate(("relu", "tanh")):
        for name in DEPTH_INITS:
            sel = [r for r in rows if r["init"] == name and r["activation"] == act]
            depth_axis = np.arange(1, n_layers + 1)
            for row_i, key, label in ((0, "stds", "activation std"), (1, "grad_norms", "weight-gradient norm")):
                vals = np.array([r[key] for r in sel])
                with np.errstate(divide="ignore"):
                    label = name + (" (= Glorot: square layers)" if name == "LeCun 1/D" else "")
                    axes[row_i, col].plot(depth_axis, np.exp(np.log(np.maximum(vals, 1e-300)).mean(axis=0)),
                                          "o-" if name != "LeCun 1/D" else "x--", ms=4, label=label)
        axes[0, col].set(title=f"{act}: activation std per layer", ylabel="std of activations (log scale)")
        axes[1, col].set(title=f"{act}: weight-gradient norm per layer", ylabel="||dL/dW|| (log scale)")
        for r in range(2):
            axes[r, col].set(xlabel="layer", yscale="log")
            axes[r, col].grid(alpha=GRID_ALPHA, which="both")
            axes[r, col].legend(fontsize=8)
    fig.suptitle(f"Deep plain MLP ({n_layers} layers x {width} units) at initialization, "
                 f"geometric mean of {seeds} seeds")
    save_figure(fig, os.path.join(out, "depth.png"))
