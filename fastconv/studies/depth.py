"""Seeds 003/004: activation std and weight-gradient norm per layer of a deep plain MLP at initialization."""
import os

import numpy as np

from ..nn import initializers, layers
from ..nn.model import Sequential
from .outputs import write_outputs
from .plots import GRID_ALPHA, legend_below, pyplot, save_figure
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
              f"square {width}x{width} layers.", "", "**Verdict.**", ""] + [f"- {v}" for v in _verdicts(rows, n_layers)]
    write_outputs(out, "depth", rows, "\n".join(lines) + "\n")
    _plot(rows, out, seeds, n_layers, width)
    return rows


def _verdicts(rows, n_layers):
    """What the last layer's activation std says about seeds 003/004's claims (geometric means over seeds)."""
    def last(init, act):
        with np.errstate(divide="ignore"):
            return float(np.exp(np.mean(np.log(np.maximum(
                [r["last_std"] for r in rows if r["init"] == init and r["activation"] == act], 1e-300)))))

    he, big, small, lecun = last("He", "relu"), last("N(0, 1)", "relu"), last("N(0, 0.01^2)", "relu"), \
        last("LeCun 1/D", "relu")
    out = [f"He (\"For ReLU use: 2 / M1\", seed 003) {'keeps' if 0.3 <= he <= 3 else 'does not keep'} ReLU "
           f"activations at O(1): std {he:.3g} at layer {n_layers}; LeCun and Glorot (\"1 / M1\", \"2 / (M1 + "
           f"M2)\") shrink them to {lecun:.3g} (ReLU halves the variance at each layer)."]
    out.append(f"N(0, 1) weights {'explode' if big > 100 else 'do not explode'} under ReLU (std {big:.3g} at layer "
               f"{n_layers}): seed 004's \"values across layers basically go to zero\" with standard-normal weights "
               f"{'does not hold' if big > 1 else 'holds'} for this width; they go to zero when std x sqrt(fan_in) is "
               f"below sqrt(2), as N(0, 0.01^2) shows ({small:.3g}).")
    tanh_small = last("N(0, 0.01^2)", "tanh")
    enough = "is not enough" if small < 1e-3 else "suffices"
    out.append(f"\"Random and small enough\" (seed 003, e.g. std 0.01) {enough} at depth: N(0, 0.01^2) ends at "
               f"std {small:.3g} (ReLU) and {tanh_small:.3g} (tanh).")
    return out


def _plot(rows, out, seeds, n_layers, width):
    """depth.png: activation std (top) and weight-gradient norm (bottom) per layer, ReLU and tanh side by side."""
    plt = pyplot("depth")
    if plt is None:
        return
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5))
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
        shown = {"relu": "ReLU", "tanh": "tanh"}[act]
        axes[0, col].set(title=f"{shown}: activation std per layer", ylabel="std of activations (log scale)")
        axes[1, col].set(title=f"{shown}: weight-gradient norm per layer", ylabel="||dL/dW|| (log scale)")
        for r in range(2):
            axes[r, col].set(xlabel="layer (1 = nearest the input)", yscale="log",
                             xticks=range(0, n_layers + 1, max(1, n_layers // 4)))
            axes[r, col].grid(alpha=GRID_ALPHA, which="both")
    fig.suptitle(f"Plain MLP of {n_layers} Dense layers x {width} units at initialization, input N(0, 1): "
                 f"geometric mean of {seeds} seeds")
    legend_below(fig, axes, title="weight initializer")
    save_figure(fig, os.path.join(out, "depth.png"), legend_rows=2)
