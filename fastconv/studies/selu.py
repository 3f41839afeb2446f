"""Seed 000 (and Klambauer et al. 2017): LeCun normal is "meant for SELU" -- does SELU + LeCun normal hold a
deep MLP's activations at mean 0 and standard deviation 1, at initialization and after a short training run?"""
import math
import os

import numpy as np

from ..nn import layers
from ..nn.model import Sequential
from ..nn.optimizers import SGD
from ..nn.training import single_threaded_blas
from .mlp import BATCH, accuracy, diverged_note, mnist_flat, train_steps
from .outputs import write_outputs
from .plots import GRID_ALPHA, legend_below, pyplot, save_figure
from .stats import ci95_half_width, mean_std
from .sweep import run_sweep

__all__ = ["SELU_CONFIGS", "SELU_TOLERANCE", "selu_model", "selu_run", "selu"]

# name: (activation of the hidden layers, initializer of every layer)
SELU_CONFIGS = {
    "SELU + LeCun normal": ("selu", "lecun_normal"),
    "SELU + Glorot normal": ("selu", "glorot_normal"),
    "SELU + He normal": ("selu", "he_normal"),
    "ReLU + He normal": ("relu", "he_normal"),
    "tanh + Glorot normal": ("tanh", "glorot_normal"),
    "ELU + He normal": ("elu", "he_normal"),
}
SELU_TOLERANCE = 0.1  # |mean| and |std - 1| within which an activation counts as at the fixed point (0, 1)
PROBE = 1000  # training images whose activations are measured


def selu_model(config, seed, hidden=32, width=256):
    """``hidden`` Dense layers of ``width`` units with the config's activation, then 10 softmax outputs; the
    config's initializer on every layer, zero biases, float32."""
    activation, init = SELU_CONFIGS[config]
    return Sequential([layers.Dense(width, activation=activation, kernel_initializer=init) for _ in range(hidden)]
                      + [layers.Dense(10, activation="softmax", kernel_initializer=init)], seed=seed)


def _layer_moments(model, x):
    """Mean and standard deviation of each hidden layer's activations over the probe images and the units."""
    with single_threaded_blas(), np.errstate(all="ignore"):
        outputs = model.backpropagate(x, np.zeros((len(x), 10), model.dtype))[:-1]
        return ([float(o.mean(dtype=np.float64)) for o in outputs],
                [float(o.std(dtype=np.float64)) for o in outputs])


def selu_run(config, seed, steps=300, hidden=32, width=256, lr=1e-3, momentum=0.9, record_every=10, train=None,
             data=None):
    """One deep MLP on the standardized MNIST subset: per-layer activation moments at initialization, then
    ``steps`` SGD steps of 64 images, the moments again and the test accuracy."""
    (x, y), (x_test, y_test) = mnist_flat(standardize=True, data=data)
    if train is not None:
        x, y = x[:train], y[:train]
    model = selu_model(config, seed, hidden, width)
    model.compile(SGD(learning_rate=lr, momentum=momentum), "sparse_categorical_crossentropy", ["accuracy"])
    model.build((x.shape[1],))
    probe = x[:PROBE]
    init_mean, init_std = _layer_moments(model, probe)
    losses = train_steps(model, x, y, steps, seed, record_every=record_every)
    trained_mean, trained_std = _layer_moments(model, probe)
    return {"config": config, "seed": seed, "steps": steps, "test_accuracy": accuracy(model, x_test, y_test),
            "last_mean_init": init_mean[-1], "last_std_init": init_std[-1], "final_loss": losses[-1],
            "diverged": bool(np.isnan(losses).any()),
            "init_mean": init_mean, "init_std": init_std, "trained_mean": trained_mean, "trained_std": trained_std,
            "losses": losses}


def selu(out="study-selu", seeds=3, jobs=1, scheduler=None, steps=300, hidden=32, width=256, lr=1e-3, momentum=0.9,
         train=None, data=None, progress=True):
    """Seed 000's "LeCun normal ... meant for SELU": activation moments per layer and accuracy after training.

    Each setting of ``SELU_CONFIGS`` builds ``hidden`` x ``width`` MLPs (``seeds`` of them), measures the mean
    and standard deviation of every hidden layer's activations on 1,000 standardized MNIST training images,
    trains for ``steps`` SGD steps (lr ``lr``, momentum ``momentum``) and measures again.  Writes selu.md/
    .json/.csv and selu.png into ``out``; returns the runs.
    """
    tasks = [dict(config=c, seed=s, steps=steps, hidden=hidden, width=width, lr=lr, momentum=momentum, train=train,
                  data=data) for c in SELU_CONFIGS for s in range(seeds)]
    rows = run_sweep(selu_run, tasks, jobs, scheduler, progress, desc="selu")
    n_train = len(mnist_flat(data=data)[0][1]) if train is None else train
    summary = {}
    for c in SELU_CONFIGS:
        sel = [r for r in rows if r["config"] == c]
        acc = [100 * r["test_accuracy"] for r in sel]
        summary[c] = {"mean": np.mean([r["init_mean"] for r in sel], axis=0),
                      "std": np.mean([r["init_std"] for r in sel], axis=0),
                      "trained_mean": np.mean([r["trained_mean"] for r in sel], axis=0),
                      "trained_std": np.mean([r["trained_std"] for r in sel], axis=0),
                      "acc": (*mean_std(acc), ci95_half_width(acc))}
    lines = [f"# selu: {hidden} x {width} MLPs on standardized MNIST, at initialization and after {steps} SGD steps, "
             f"{seeds} seeds", "",
             f"{hidden} hidden layers of {width} units, then 10 softmax outputs; the initializer on every layer. "
             f"Inputs standardized to mean 0, variance 1. Activation mean and std over 1,000 training images and "
             f"all units of a layer (mean over seeds); then SGD lr {lr}, momentum {momentum}, {steps} steps of "
             f"{BATCH} images ({steps * BATCH / n_train:.1f} passes over {n_train} training images), float32; test "
             "accuracy % on 1,000 test images.", "",
             f"| activation + initializer | layer {hidden} mean (init) | layer {hidden} std (init) | "
             f"layers within ±{SELU_TOLERANCE} of (0, 1) (init) | layer {hidden} std (trained) | "
             "test accuracy % (mean ± std) | 95% CI |",
             "|---|---|---|---|---|---|---|"]
    for c, s in summary.items():
        m, sd, h = s["acc"]
        lines.append(f"| {c} | {s['mean'][-1]:.3f} | {s['std'][-1]:.3f} | {_at_fixed_point(s)}/{hidden} | "
                     f"{s['trained_std'][-1]:.3f} | {m:.1f} ± {sd:.1f} | "
                     f"[{max(m - h, 0):.1f}, {min(m + h, 100):.1f}] |")
    note = diverged_note(rows, "config")
    lines += ["", note] if note else []
    first = _first_layer_stds(width)
    lines += ["", f"On the square {width} x {width} layers Glorot's variance 2/(fan_in + fan_out) equals LeCun's "
              f"1/fan_in; only the first layer (784 inputs) differs: weight std {first['glorot_normal']:.4f} "
              f"(Glorot) against {first['lecun_normal']:.4f} (LeCun).", "", "**Verdict.**", ""]
    lines += [f"- {v}" for v in _verdicts(summary, hidden)]
    write_outputs(out, "selu", rows, "\n".join(lines) + "\n")
    _plot(summary, out, seeds, hidden, width, steps, rows)
    return rows


def _at_fixed_point(s):
    """How many layers have |mean| and |std - 1| within :data:`SELU_TOLERANCE` at initialization."""
    return int(np.sum((np.abs(s["mean"]) <= SELU_TOLERANCE) & (np.abs(s["std"] - 1) <= SELU_TOLERANCE)))


def _first_layer_stds(width, fan_in=784):
    return {"lecun_normal": math.sqrt(1 / fan_in), "glorot_normal": math.sqrt(2 / (fan_in + width)),
            "he_normal": math.sqrt(2 / fan_in)}


def _verdicts(summary, hidden):
    lecun, glorot, he = summary["SELU + LeCun normal"], summary["SELU + Glorot normal"], summary["SELU + He normal"]
    worst = float(max(np.max(np.abs(lecun["mean"])), np.max(np.abs(lecun["std"] - 1))))
    holds = _at_fixed_point(lecun) == hidden
    out = [f"Seed 000's \"Lecun Normal Initializer; meant for SELU activation function\" (Klambauer et al.'s "
           f"self-normalizing fixed point, mean 0 and std 1) {'holds' if holds else 'does not hold'} at "
           f"initialization: with SELU + LeCun normal {_at_fixed_point(lecun)} of {hidden} layers are within "
           f"±{SELU_TOLERANCE} of (0, 1) (largest deviation {worst:.3f}); layer {hidden} has mean "
           f"{lecun['mean'][-1]:.3f}, std {lecun['std'][-1]:.3f}. After training its layer {hidden} std is "
           f"{lecun['trained_std'][-1]:.3f}."]
    gap = float(np.max(np.abs(glorot["std"] - lecun["std"])))
    back = abs(glorot["mean"][-1]) <= SELU_TOLERANCE and abs(glorot["std"][-1] - 1) <= SELU_TOLERANCE
    out.append(f"SELU + Glorot normal starts off the fixed point only in layer 1 (std {glorot['std'][0]:.3f}; "
               f"LeCun: {lecun['std'][0]:.3f}), the one layer whose weights differ from LeCun's; "
               + ("the fixed point, which attracts, pulls it back: " if back else "it does not return to it: ")
               + f"layer {hidden} mean {glorot['mean'][-1]:.3f}, std {glorot['std'][-1]:.3f}, "
               f"{_at_fixed_point(glorot)}/{hidden} layers within ±{SELU_TOLERANCE} (largest std difference from "
               f"LeCun over the layers: {gap:.3f}).")
    off = abs(he["mean"][-1]) > SELU_TOLERANCE or abs(he["std"][-1] - 1) > SELU_TOLERANCE
    out.append(f"SELU + He normal (twice LeCun's variance) {'settles off' if off else 'also reaches'} the fixed "
               f"point: layer {hidden} mean "
               f"{he['mean'][-1]:.3f}, std {he['std'][-1]:.3f}, {_at_fixed_point(he)}/{hidden} layers within "
               f"±{SELU_TOLERANCE}.")
    others = [f"{c} mean {s['mean'][-1]:.3f}, std {s['std'][-1]:.3g}" for c, s in summary.items()
              if not c.startswith("SELU")]
    out.append(f"The other activations at layer {hidden} at initialization: {'; '.join(others)}.")
    ranked = sorted(summary, key=lambda c: -summary[c]["acc"][0])
    best, second = ranked[0], ranked[1]
    b, s = summary[best]["acc"], summary[second]["acc"]
    apart = b[0] - b[2] > s[0] + s[2]
    out.append("After training: " + ", ".join(f"{c} {summary[c]['acc'][0]:.1f}%" for c in ranked)
               + f"; {best} is {'ahead with' if apart else 'first, but its 95% interval overlaps'} {second}'s"
               + (" (disjoint 95% intervals)." if apart else "."))
    return out


def _plot(summary, out, seeds, hidden, width, steps, rows):
    """selu.png: per-layer activation mean and std at initialization and after training, the training loss
    and the test accuracy of every setting."""
    plt = pyplot("selu")
    if plt is None:
        return
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    depth = np.arange(1, hidden + 1)
    colors = dict(zip(SELU_CONFIGS, plt.cm.tab10(np.arange(len(SELU_CONFIGS)))))
    for c, s in summary.items():
        style = dict(color=colors[c], ms=3, label=c)
        axes[0, 0].plot(depth, s["mean"], "o-", **style)
        axes[0, 1].plot(depth, s["std"], "o-", **style)
        axes[1, 0].plot(depth, s["trained_mean"], "o-", **style)
        axes[1, 1].plot(depth, s["trained_std"], "o-", **style)
    for row, when in ((0, "at initialization"), (1, f"after {steps} SGD steps")):
        axes[row, 0].axhline(0, color="k", lw=1, ls=":")
        axes[row, 1].axhline(1, color="k", lw=1, ls=":")
        axes[row, 0].set(title=f"Activation mean per layer, {when}", xlabel="hidden layer",
                         ylabel="mean of the activations")
        axes[row, 1].set(title=f"Activation std per layer, {when}", xlabel="hidden layer",
                         ylabel="std of the activations (log scale)", yscale="log")
    ax = axes[0, 2]
    rng = np.random.default_rng(0)
    for i, c in enumerate(SELU_CONFIGS):
        acc = np.array([100 * r["test_accuracy"] for r in rows if r["config"] == c])
        ax.scatter(np.full(len(acc), i) + rng.uniform(-0.12, 0.12, len(acc)), acc, s=16, color=colors[c], alpha=0.7)
        m, _, h = summary[c]["acc"]
        ax.errorbar(i + 0.25, m, yerr=h, fmt="_", color="k", capsize=4, ms=12)
    ax.set_xticks(range(len(SELU_CONFIGS)))
    ax.set_xticklabels([c.replace(" + ", "\n+ ").replace(" normal", "") for c in SELU_CONFIGS], fontsize=9)
    ax.set(title=f"Test accuracy after {steps} steps (bar: mean, 95% CI)", ylabel="test accuracy (%)",
           ylim=(0, 100))
    ax.grid(alpha=GRID_ALPHA, axis="y")
    ax = axes[1, 2]
    for c in SELU_CONFIGS:
        curves = np.array([r["losses"] for r in rows if r["config"] == c])
        x = np.minimum((np.arange(curves.shape[1]) + 1) * steps / curves.shape[1], steps)
        with np.errstate(all="ignore"):
            ax.plot(x, np.nanmean(curves, axis=0), color=colors[c], label=c)
    ax.set(title="Training loss (mean over seeds)", xlabel="training step (64 images each)",
           ylabel="cross-entropy (nats, log scale)", yscale="log")
    for a in axes.flat:
        a.grid(alpha=GRID_ALPHA, which="both")
    fig.suptitle(f"{hidden}-layer MLPs of {width} units on standardized MNIST ({seeds} seeds; the self-normalizing "
                 "fixed point is mean 0, std 1)")
    legend_below(fig, axes, ncol=3)
    save_figure(fig, os.path.join(out, "selu.png"), legend_rows=2)
