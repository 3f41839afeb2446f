"""Seed 003 and He et al. 2015: which plain MLPs train on MNIST as they get deeper, for a fixed budget of steps."""
import os

import numpy as np

from ..nn import layers
from ..nn.model import Sequential
from ..nn.optimizers import SGD
from .mlp import BATCH, accuracy, diverged_note, mnist_flat, train_steps
from .outputs import write_outputs
from .plots import GRID_ALPHA, legend_below, pyplot, save_figure
from .stats import ci95_half_width, mean_std
from .sweep import run_sweep

__all__ = ["TRAIN_CONFIGS", "TRAIN_DEPTHS", "STALLED", "TRAINED", "trainability_run", "trainability"]

# name: (activation of the hidden layers, initializer of every layer)
TRAIN_CONFIGS = {
    "sigmoid + Glorot": ("sigmoid", "glorot_normal"),
    "tanh + Glorot": ("tanh", "glorot_normal"),
    "ReLU + Glorot": ("relu", "glorot_normal"),
    "ReLU + He": ("relu", "he_normal"),
}
TRAIN_DEPTHS = (2, 5, 10, 20, 30)
STALLED = 20.0  # test accuracy (%) below which a run has learned (almost) nothing: chance is 10%
TRAINED = 50.0  # test accuracy (%) from which a setting counts as learning within the budget (5x chance)


def trainability_run(config, depth, seed, steps=600, width=128, lr=0.01, momentum=0.9, record_every=10,
                     train=None, data=None):
    """Train one plain MLP on the MNIST subset for ``steps`` SGD steps of 64 images; float32.

    The network has ``depth`` Dense layers (weight layers): ``depth - 1`` hidden layers of ``width`` units
    with ``TRAIN_CONFIGS[config]``'s activation, then 10 softmax outputs, every layer with the config's
    initializer and zero biases.  SGD with momentum (``lr``, ``momentum``) on sparse cross-entropy.
    Returns the training loss every ``record_every`` steps and the accuracy on the 1,000 test images.
    """
    activation, init = TRAIN_CONFIGS[config]
    (x, y), (x_test, y_test) = mnist_flat(data=data)
    if train is not None:
        x, y = x[:train], y[:train]
    model = Sequential([layers.Dense(width, activation=activation, kernel_initializer=init)
                        for _ in range(depth - 1)]
                       + [layers.Dense(10, activation="softmax", kernel_initializer=init)], seed=seed)
    model.compile(SGD(learning_rate=lr, momentum=momentum), "sparse_categorical_crossentropy", ["accuracy"])
    losses = train_steps(model, x, y, steps, seed, record_every=record_every)
    return {"config": config, "depth": depth, "seed": seed, "steps": steps,
            "test_accuracy": accuracy(model, x_test, y_test), "final_loss": losses[-1],
            "diverged": bool(np.isnan(losses).any()), "losses": losses}


def trainability(out="study-trainability", seeds=3, jobs=1, scheduler=None, depths=TRAIN_DEPTHS, steps=600,
                 width=128, lr=0.01, momentum=0.9, train=None, data=None, progress=True):
    """Seed 003 and He et al. 2015: final test accuracy of plain MLPs by depth, mean +- std over ``seeds``.

    Every setting of ``TRAIN_CONFIGS`` x ``depths`` trains for the same ``steps`` SGD steps (lr ``lr``,
    momentum ``momentum``, 64 images a step) on the embedded MNIST subset (4,000 training images; ``train``
    keeps the first N) and is tested on its 1,000 test images.  Writes trainability.md/.json/.csv,
    trainability_loss.png and trainability_accuracy.png into ``out``; returns the runs.
    """
    depths = tuple(depths)
    n_train = len(mnist_flat(data=data)[0][1]) if train is None else train
    tasks = [dict(config=c, depth=d, seed=s, steps=steps, width=width, lr=lr, momentum=momentum, train=train,
                  data=data) for c in TRAIN_CONFIGS for d in depths for s in range(seeds)]
    rows = run_sweep(trainability_run, tasks, jobs, scheduler, progress, desc="trainability")
    stats = {}
    for c in TRAIN_CONFIGS:
        for d in depths:
            acc = [100 * r["test_accuracy"] for r in rows if r["config"] == c and r["depth"] == d]
            stats[c, d] = (*mean_std(acc), ci95_half_width(acc))
    lines = [f"# trainability: plain MLPs of {', '.join(map(str, depths))} layers on MNIST, {steps} SGD steps",
             "",
             f"Each network: depth - 1 hidden layers of {width} units, then 10 softmax outputs; the initializer on "
             f"every layer; SGD lr {lr}, momentum {momentum}, {steps} steps of {BATCH} images "
             f"({steps * BATCH / n_train:.1f} passes "
             f"over the training images); float32; {seeds} seeds. Test accuracy % on 1,000 test images "
             "(mean ± std over seeds; chance is 10%):", "",
             "| activation + initializer | " + " | ".join(f"{d} layers" for d in depths) + " |",
             "|---|" + "---|" * len(depths)]
    for c in TRAIN_CONFIGS:
        lines.append(f"| {c} | " + " | ".join(f"{stats[c, d][0]:.1f} ± {stats[c, d][1]:.1f}" for d in depths) + " |")
    note = diverged_note(rows, "config")
    lines += ["", note] if note else []
    lines += ["", "**Verdict.**", ""] + [f"- {v}" for v in _verdicts(stats, depths, seeds)]
    write_outputs(out, "trainability", rows, "\n".join(lines) + "\n")
    _plot(rows, out, seeds, depths, steps, stats)
    return rows


def _fmt(stat):
    m, _, h = stat
    return f"{m:.1f}% [{max(m - h, 0.0):.1f}, {min(m + h, 100.0):.1f}]"


def _verdicts(stats, depths, seeds):
    """Seed 003's claim and He et al.'s 30-layer result, judged from the measured means and 95% intervals."""
    deep, shallow = max(depths), min(depths)
    sig, he, glorot, tanh = "sigmoid + Glorot", "ReLU + He", "ReLU + Glorot", "tanh + Glorot"
    stalled_from = next((d for d in depths if all(stats[sig, e][0] < STALLED for e in depths if e >= d)), None)
    note = (f"(95% intervals over {seeds} seeds; 'stalls': below {STALLED:.0f}% test accuracy, chance being 10%; "
            f"'learns': {TRAINED:.0f}% or more)")
    out = []
    if stalled_from is None:
        out.append(f"Seed 003's \"very deep neural networks just can't be trained using standard backpropagation\" "
                   f"(with the sigmoid) does not hold in this budget: sigmoid + Glorot still reaches "
                   f"{_fmt(stats[sig, deep])} at {deep} layers {note}.")
    else:
        relu_ok = all(stats[he, d][0] >= TRAINED for d in depths if d >= stalled_from)
        verb = ("holds in this budget" if relu_ok else
                "holds for the sigmoid, but ReLU + He does not learn at all those depths either")
        at_deep = f" and {_fmt(stats[he, deep])} at {deep}" if deep != stalled_from else ""
        out.append(f"Seed 003's \"very deep neural networks just can't be trained using standard backpropagation\" "
                   f"(with the sigmoid; \"by using the ReLU we can train a deep network\") {verb}: sigmoid + Glorot "
                   f"reaches {_fmt(stats[sig, shallow])} at {shallow} layers and stalls from {stalled_from} layers on "
                   f"({_fmt(stats[sig, stalled_from])} at {stalled_from}), while ReLU + He reaches "
                   f"{_fmt(stats[he, stalled_from])} at {stalled_from} layers{at_deep} {note}.")
    below = [d for d in depths if stats[tanh, d][0] < TRAINED]
    worst = min(depths, key=lambda d: stats[tanh, d][0])
    if below:
        tail = f"learns up to {max([d for d in depths if d < min(below)], default='no')} layers"
        tanh_verdict = f"agrees with it: tanh + Glorot {tail} and drops below {TRAINED:.0f}% from {min(below)} layers"
    else:
        tanh_verdict = (f"does not hold for tanh here: tanh + Glorot learns at every depth, its worst being "
                        f"{_fmt(stats[tanh, worst])} at {worst} layers (tanh has slope 1 at 0, the sigmoid at most "
                        "0.25)")
    out.append(f"Seed 003 puts tanh with the sigmoid (\"not use the sigmoid or the tanh and just use the ReLU\"); "
               f"this {tanh_verdict}.")
    h, g = stats[he, deep], stats[glorot, deep]
    separated = h[0] - h[2] > g[0] + g[2]
    if h[0] >= TRAINED and g[0] < STALLED and separated:
        word = "is reproduced"
    elif h[0] > g[0] and separated:
        word = "is reproduced in part (He is better, but not 'converges' against 'stalls')"
    else:
        word = "is not reproduced"
    out.append(f"He et al. 2015's 30-layer result (a ReLU network converges with their initialization and stalls "
               f"with Xavier/Glorot's) {word} at {deep} layers: ReLU + He {_fmt(h)}, ReLU + Glorot {_fmt(g)}.")
    return out


def _plot(rows, out, seeds, depths, steps, stats):
    """trainability_loss.png (loss curves by depth, a panel per setting) and trainability_accuracy.png."""
    plt = pyplot("trainability")
    if plt is None:
        return
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True, sharey=True)
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(depths)))
    for ax, c in zip(axes.flat, TRAIN_CONFIGS):
        for d, color in zip(depths, colors):
            curves = np.array([r["losses"] for r in rows if r["config"] == c and r["depth"] == d])
            every = steps / curves.shape[1]
            x = np.minimum((np.arange(curves.shape[1]) + 1) * every, steps)
            with np.errstate(all="ignore"):
                ax.plot(x, np.nanmean(curves, axis=0), color=color, label=f"{d} layers")
                ax.fill_between(x, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0), color=color, alpha=0.15)
        ax.axhline(np.log(10), color="grey", ls=":", lw=1)
        ax.set(title=c, yscale="log")
        ax.grid(alpha=GRID_ALPHA, which="both")
    for ax in axes[1]:
        ax.set_xlabel("training step (64 images each)")
    for ax in axes[:, 0]:
        ax.set_ylabel("training loss (cross-entropy, nats)")
    axes[0, 0].annotate("chance level: ln 10", (steps, np.log(10)), xytext=(-4, 4), textcoords="offset points",
                        ha="right", va="bottom", fontsize=9, color="grey")
    fig.suptitle(f"Plain MLPs on MNIST: training loss by depth (mean over {seeds} seeds, band: min to max)")
    legend_below(fig, axes)
    save_figure(fig, os.path.join(out, "trainability_loss.png"), legend_rows=1)

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, c in enumerate(TRAIN_CONFIGS):
        m = [stats[c, d][0] for d in depths]
        s = [stats[c, d][1] for d in depths]
        ax.errorbar(np.array(depths) + (i - 1.5) * 0.25, m, yerr=s, fmt="o-", capsize=3, label=c)
    ax.axhline(10, color="grey", ls=":", lw=1)
    ax.text(1.01, 10, "chance\n10%", transform=ax.get_yaxis_transform(), va="center", fontsize=9, color="grey")
    ax.set(title=f"Plain MLPs on MNIST: test accuracy after {steps} SGD steps (mean ± std, {seeds} seeds)",
           xlabel="depth (weight layers)", ylabel="test accuracy (%)", ylim=(0, 100), xticks=list(depths))
    ax.grid(alpha=GRID_ALPHA)
    legend_below(fig, ax, ncol=4)
    save_figure(fig, os.path.join(out, "trainability_accuracy.png"), legend_rows=1)
