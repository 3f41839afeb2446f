"""Seeds 004 and 002: does batch normalization make the choice of initializer matter less?"""
import os

import numpy as np

from ..nn import initializers, layers
from ..nn.model import Sequential
from ..nn.optimizers import Adam
from .mlp import BATCH, accuracy, diverged_note, mnist_flat, train_steps
from .outputs import write_outputs
from .plots import GRID_ALPHA, pyplot, save_figure
from .stats import ci95_half_width, mean_std, spread_ci95
from .sweep import run_sweep

__all__ = ["BN_INITS", "batchnorm_model", "batchnorm_run", "batchnorm"]

BN_INITS = {
    "N(0, 1)": initializers.RandomNormal(0.0, 1.0),
    "N(0, 0.01^2)": initializers.RandomNormal(0.0, 0.01),
    "LeCun": initializers.lecun_normal(),
    "Glorot": initializers.glorot_normal(),
    "He": initializers.he_normal(),
}
CONDITIONS = ("no BN", "BN")


def batchnorm_model(init_name, bn, seed, hidden=10, width=128):
    """A plain MLP for MNIST: ``hidden`` layers of ``width`` ReLU units, then 10 softmax outputs (float32).

    The hidden layers' weights come from ``BN_INITS[init_name]``; the output layer, which no normalization
    follows in either network, keeps Glorot normal.  With ``bn`` each hidden layer is Dense (linear) ->
    ``BatchNormalization()`` -> ReLU, batch normalization before the nonlinearity as Ioffe and Szegedy
    place it; without, Dense with ReLU.
    """
    init = BN_INITS[init_name]
    stack = []
    for _ in range(hidden):
        if bn:
            stack += [layers.Dense(width, kernel_initializer=init), layers.BatchNormalization(),
                      layers.Activation("relu")]
        else:
            stack.append(layers.Dense(width, activation="relu", kernel_initializer=init))
    stack.append(layers.Dense(10, activation="softmax", kernel_initializer="glorot_normal"))
    return Sequential(stack, seed=seed)


def batchnorm_run(init_name, bn, seed, steps=250, hidden=10, width=128, lr=1e-3, record_every=10, train=None,
                  data=None):
    """Train :func:`batchnorm_model` for ``steps`` Adam steps of 64 images; the test accuracy and loss curve."""
    (x, y), (x_test, y_test) = mnist_flat(data=data)
    if train is not None:
        x, y = x[:train], y[:train]
    model = batchnorm_model(init_name, bn, seed, hidden, width)
    model.compile(Adam(learning_rate=lr), "sparse_categorical_crossentropy", ["accuracy"])
    losses = train_steps(model, x, y, steps, seed, record_every=record_every)
    return {"init": init_name, "bn": bool(bn), "seed": seed, "steps": steps,
            "test_accuracy": accuracy(model, x_test, y_test), "final_loss": losses[-1],
            "diverged": bool(np.isnan(losses).any()), "losses": losses}


def batchnorm(out="study-batchnorm", seeds=5, jobs=1, scheduler=None, steps=250, hidden=10, width=128, lr=1e-3,
              train=None, data=None, progress=True):
    """Seeds 004/002: test accuracy per initializer with and without batch normalization, over ``seeds`` seeds.

    Every run trains :func:`batchnorm_model` with Adam (``lr``) for ``steps`` steps of 64 images on the
    embedded MNIST subset (4,000 training images; ``train`` keeps the first N) and tests it on the 1,000 test
    images.  Writes batchnorm.md (mean +- std and 95% interval per initializer and condition, the spread of
    the means across initializers with a bootstrap interval, the verdict), batchnorm.json/.csv and
    batchnorm.png into ``out``; returns the runs.
    """
    tasks = [dict(init_name=name, bn=bn, seed=s, steps=steps, hidden=hidden, width=width, lr=lr, train=train,
                  data=data) for bn in (False, True) for name in BN_INITS for s in range(seeds)]
    rows = run_sweep(batchnorm_run, tasks, jobs, scheduler, progress, desc="batchnorm")
    acc = {(name, bn): [100 * r["test_accuracy"] for r in rows if r["init"] == name and r["bn"] == bn]
           for name in BN_INITS for bn in (False, True)}
    stats = {key: (*mean_std(v), ci95_half_width(v)) for key, v in acc.items()}
    spreads = {bn: spread_ci95([acc[name, bn] for name in BN_INITS]) for bn in (False, True)}
    n_train = len(mnist_flat(data=data)[0][1]) if train is None else train
    lines = [f"# batchnorm: {hidden} x {width} ReLU MLP on MNIST with and without batch normalization, {seeds} seeds",
             "",
             f"{hidden} hidden layers of {width} units, each Dense -> BatchNormalization -> ReLU (BN) or Dense with "
             f"ReLU (no BN), then 10 softmax outputs (Glorot normal in both). The initializer is that of the hidden "
             f"layers. Adam lr {lr}, {steps} steps of {BATCH} images ({steps * BATCH / n_train:.1f} passes over "
             f"{n_train} training images), float32. Test accuracy % on 1,000 test images:", "",
             "| initializer | no BN: mean ± std | no BN: 95% CI | BN: mean ± std | BN: 95% CI |",
             "|---|---|---|---|---|"]
    for name in BN_INITS:
        cells = []
        for bn in (False, True):
            m, s, h = stats[name, bn]
            cells += [f"{m:.1f} ± {s:.1f}", f"[{max(m - h, 0):.1f}, {min(m + h, 100):.1f}]"]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    cells = []
    for bn in (False, True):
        spread, low, high = spreads[bn]
        cells += [f"{spread:.1f}", f"[{low:.1f}, {high:.1f}]"]
    lines += [f"| spread: max − min of the means | {' | '.join(cells)} |", "",
              "The spread's interval is a 95% bootstrap interval (the seeds resampled within each initializer).", "",
              *([diverged_note(rows, "init"), ""] if diverged_note(rows, "init") else []),
              "**Verdict.**", ""] + [f"- {v}" for v in _verdicts(stats, spreads)]
    write_outputs(out, "batchnorm", rows, "\n".join(lines) + "\n",
                  extra={"spread": {CONDITIONS[bn]: list(spreads[bn]) for bn in (False, True)}})
    _plot(rows, out, seeds, steps, stats, hidden, width)
    return rows


def _fmt(stat):
    m, _, h = stat
    return f"{m:.1f}% [{max(m - h, 0):.1f}, {min(m + h, 100):.1f}]"


def _verdicts(stats, spreads):
    """Seed 004's claim and seed 002's suggestion, judged from the spreads and the per-initializer intervals."""
    (s0, l0, h0), (s1, l1, h1) = spreads[False], spreads[True]

    def apart(a, b):  # a's 95% interval lies above b's
        return a[0] - a[2] > b[0] + b[2]

    best = max(BN_INITS, key=lambda n: stats[n, True][0])
    lowest = min(BN_INITS, key=lambda n: stats[n, True][0])
    still = apart(stats[best, True], stats[lowest, True])
    if h1 < l0 and not still:
        word, how = "holds", "and with BN no initializer's interval lies apart from the best one's"
    elif h1 < l0:
        word = "holds in part"
        how = "BN shrinks the spread (the two spreads' intervals do not overlap), but does not erase it"
    elif s1 < s0:
        word, how = "is not established", "the spread is smaller with BN, but the two spreads' intervals overlap"
    else:
        word, how = "does not hold", "batch normalization does not shrink the spread"
    out = [f"Seed 004's \"The value of initialization techniques gets lost when we use batch normalization\" "
           f"{word}: the means of the five initializers span {s0:.1f} points [{l0:.1f}, {h0:.1f}] without BN and "
           f"{s1:.1f} points [{l1:.1f}, {h1:.1f}] with BN; {how}."]
    out.append(f"With BN, the best and the worst initializer {'still differ' if still else 'cannot be told apart'}: "
               f"{best} {_fmt(stats[best, True])} against {lowest} {_fmt(stats[lowest, True])}"
               + (" (disjoint 95% intervals)." if still else " (overlapping 95% intervals)."))
    parts, helped = [], []
    for name in ("N(0, 1)", "N(0, 0.01^2)"):
        a, b = stats[name, False], stats[name, True]
        helped.append(apart(b, a))
        level = "as good as the best" if not apart(stats[best, True], b) else f"still below {best}"
        parts.append(f"{name} {_fmt(a)} without BN, {_fmt(b)} with ({'better' if apart(b, a) else 'not better'}"
                     f"{', ' + level if apart(b, a) else ''})")
    verdict = ("holds for both" if all(helped) else "holds for one of the two" if any(helped) else
               "does not hold for the")
    out.append(f"Seed 002's \"A method may be using the batch normalization\" (as the fix for a bad initialization) "
               f"{verdict} badly scaled initializers: {'; '.join(parts)}.")
    return out


def _plot(rows, out, seeds, steps, stats, hidden, width):
    """batchnorm.png: every run's test accuracy per initializer, no BN and BN side by side, with the means and
    95% intervals (left), and the mean training loss curves (right)."""
    plt = pyplot("batchnorm")
    if plt is None:
        return
    fig, (ax, lax) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1.1, 1]})
    rng = np.random.default_rng(0)
    colors = {False: "tab:orange", True: "tab:blue"}
    names = list(BN_INITS)
    for bn in (False, True):
        offset = 0.2 if bn else -0.2
        for i, name in enumerate(names):
            acc = np.array([100 * r["test_accuracy"] for r in rows if r["init"] == name and r["bn"] == bn])
            ax.scatter(i + offset + rng.uniform(-0.06, 0.06, len(acc)), acc, s=16, alpha=0.6, color=colors[bn],
                       label=("with batch normalization" if bn else "without batch normalization") if i == 0 else None)
            m, _, h = stats[name, bn]
            ax.errorbar(i + offset + 0.1, m, yerr=h, fmt="_", color="k", capsize=4, ms=12,
                        label="mean and 95% interval" if i == 0 and bn else None)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set(title="Test accuracy per initializer of the hidden layers", xlabel="initializer of the hidden layers",
           ylabel="test accuracy (%)", ylim=(0, 100))
    ax.grid(alpha=GRID_ALPHA, axis="y")
    palette = plt.cm.tab10(np.arange(len(names)))
    top, above = 20.0, []
    for bn, style in ((False, "--"), (True, "-")):
        for name, color in zip(names, palette):
            curves = np.array([r["losses"] for r in rows if r["init"] == name and r["bn"] == bn])
            x = np.minimum((np.arange(curves.shape[1]) + 1) * steps / curves.shape[1], steps)
            with np.errstate(all="ignore"):
                mean = np.nanmean(curves, axis=0)
            lax.plot(x, mean, style, color=color)
            if np.nanmax(mean, initial=0) > top:
                above.append(f"{name} {'with' if bn else 'without'} BN (up to {np.nanmax(mean):.0e})")
    for name, color in zip(names, palette):
        lax.plot([], [], color=color, lw=6, label=name)
    lax.plot([], [], "k-", label="with BN")
    lax.plot([], [], "k--", label="without BN")
    lax.set(title="Training loss (mean over seeds)", xlabel="training step (64 images each)",
            ylabel="training loss (cross-entropy, nats, log scale)", yscale="log")
    lax.set_ylim(top=top)
    if above:
        lax.text(0.02, 0.97, "above the chart: " + "; ".join(above), transform=lax.transAxes, va="top", fontsize=9)
    lax.grid(alpha=GRID_ALPHA, which="both")
    fig.suptitle(f"{hidden}-layer ReLU MLP ({width} units) on MNIST, {steps} Adam steps, {seeds} seeds")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    lax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="initializer")
    save_figure(fig, os.path.join(out, "batchnorm.png"))
