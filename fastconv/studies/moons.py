"""Seed 001: zeros vs large random vs He (plus Glorot, LeCun) on make_moons, trained by full-batch descent."""
import os

import numpy as np

from .. import datasets
from ..nn import initializers
from ..nn.optimizers import SGD
from ..zoo import moons_mlp
from .outputs import write_outputs
from .plots import GRID_ALPHA, legend_right, pyplot, save_figure
from .stats import mean_std
from .sweep import run_sweep

__all__ = ["MOONS_INITS", "MOONS_SEED_FIGURES", "moons_model", "moons_run", "moons"]

MOONS_INITS = {
    "zeros": initializers.Zeros(),
    "random_normal x10": initializers.RandomNormal(0.0, 10.0),  # seed 001's Initializer(scale=10): randn * 10
    "he_normal": initializers.he_normal(),
    "glorot_normal": initializers.glorot_normal(),
    "lecun_normal": initializers.lecun_normal(),
}
# seed 001's published (train %, test %) from one run each
MOONS_SEED_FIGURES = {"zeros": (50, 50), "random_normal x10": (85, 82), "he_normal": (95, 94)}


def moons_model(init_name, seed):
    """Seed 001's network (:func:`fastconv.zoo.moons_mlp`: Dense 12 ReLU -> 6 ReLU -> 1 sigmoid, float64) with
    ``MOONS_INITS[init_name]`` on the hidden layers, compiled with SGD (lr 0.01) and binary cross-entropy."""
    model = moons_mlp(MOONS_INITS[init_name], seed)
    model.compile(SGD(learning_rate=0.01), "binary_crossentropy", ["accuracy"])
    return model


def moons_run(init_name, seed, epochs=15000, lr=0.01, record_every=100, grid=None):
    """Full-batch gradient descent on make_moons (400 train / 100 test, noise 0.2) for one seed."""
    x_train, y_train = datasets.make_moons(400, noise=0.2, seed=seed)
    x_test, y_test = datasets.make_moons(100, noise=0.2, seed=seed + 10_000)
    model = moons_model(init_name, seed)
    model.optimizer.learning_rate = lr
    model.build((2,))
    x, y = np.asarray(x_train, dtype=model.dtype), np.asarray(y_train)  # converted once for every step
    losses = []
    for epoch in range(epochs):
        loss = float(model.train_on_batch(x, y)["loss"])
        if epoch % record_every == 0 or epoch == epochs - 1:
            losses.append(loss)
    row = {"init": init_name, "seed": seed, "train_accuracy": model.evaluate(x_train, y_train)["accuracy"],
           "test_accuracy": model.evaluate(x_test, y_test)["accuracy"], "final_loss": losses[-1], "losses": losses}
    if grid is not None:
        row["grid_probability"] = model.predict(np.asarray(grid))[:, 0].round(4).tolist()
    return row


def moons(out="study-moons", seeds=3, jobs=1, scheduler=None, epochs=15000, progress=True):
    """Seed 001: zeros vs large random vs He (plus Glorot, LeCun) on make_moons, over ``seeds`` seeds.

    Writes moons.md (train/test accuracy mean +- std next to the seed's figures), moons.json/.csv, and
    moons_loss.png, moons_boundaries.png into ``out``.
    """
    xs, ys = np.meshgrid(np.linspace(-2.0, 3.0, 101), np.linspace(-1.5, 2.0, 71))
    grid = np.c_[xs.ravel(), ys.ravel()]
    tasks = [dict(init_name=name, seed=s, epochs=epochs, grid=grid if s == 0 else None)
             for name in MOONS_INITS for s in range(seeds)]
    rows = run_sweep(moons_run, tasks, jobs, scheduler, progress, desc="moons")
    lines = [f"# moons: make_moons 400/100, noise 0.2; Dense 12-6-1; full-batch GD lr 0.01, {epochs} epochs; "
             f"{seeds} seeds", "",
             "| initializer | train accuracy % | test accuracy % | seed 001 (train/test, one run) |",
             "|---|---|---|---|"]
    for name in MOONS_INITS:
        sel = [r for r in rows if r["init"] == name]
        tr = mean_std([100 * r["train_accuracy"] for r in sel])
        te = mean_std([100 * r["test_accuracy"] for r in sel])
        seed_fig = MOONS_SEED_FIGURES.get(name)
        lines.append(f"| {name} | {tr[0]:.1f} ± {tr[1]:.1f} | {te[0]:.1f} ± {te[1]:.1f} | "
                     f"{'%d / %d' % seed_fig if seed_fig else '—'} |")
    lines += ["", "± is the standard deviation over seeds (each seed: its own data draw and initialization).", "",
              "**Verdict.**", ""] + [f"- {v}" for v in _verdicts(rows)]
    write_outputs(out, "moons", rows, "\n".join(lines) + "\n",
                  extra={"grid_x": xs[0].tolist(), "grid_y": ys[:, 0].tolist()})
    _plot(rows, out, seeds, epochs, xs, ys)
    return rows


def _verdicts(rows):
    """Seed 001's three single-run figures against the range of the measured runs (few seeds: no t-interval)."""
    out = []
    for name, (train, test) in MOONS_SEED_FIGURES.items():
        sel = [r for r in rows if r["init"] == name]
        tr, te = (mean_std([100 * r[k] for r in sel]) for k in ("train_accuracy", "test_accuracy"))
        runs = [100 * r["test_accuracy"] for r in sel]
        if min(runs) <= test <= max(runs):
            where = f"within the range of the {len(runs)} runs ({min(runs):.0f} to {max(runs):.0f}%)"
        elif test < min(runs):
            where = f"below all {len(runs)} runs (the lowest: {min(runs):.0f}%)"
        else:
            where = f"above all {len(runs)} runs (the highest: {max(runs):.0f}%)"
        out.append(f"{name}: seed 001's {train}/{test} (one run) against {tr[0]:.1f} ± {tr[1]:.1f} / {te[0]:.1f} ± "
                   f"{te[1]:.1f} (train/test, mean ± std); the seed's test figure is {where}.")
    return out


def _plot(rows, out, seeds, epochs, xs, ys):
    """moons_loss.png (loss curves per initializer) and moons_boundaries.png (seed 0's decision regions)."""
    plt = pyplot("moons")
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for name in MOONS_INITS:
        curves = np.array([r["losses"] for r in rows if r["init"] == name])
        steps = np.minimum(np.arange(curves.shape[1]) * 100, epochs - 1)
        mean = curves.mean(axis=0)
        ax.plot(steps, mean, label=name)
        ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
    ax.set(title=f"make_moons: training loss of the Dense 12-6-1 network\n(mean, band = min to max over {seeds} seeds)",
           xlabel="epoch (one full-batch gradient step each)", ylabel="binary cross-entropy (nats, log scale)",
           yscale="log")
    ax.grid(alpha=GRID_ALPHA, which="both")
    legend_right(ax, title="initializer")
    save_figure(fig, os.path.join(out, "moons_loss.png"))
    x_train, y_train = datasets.make_moons(400, noise=0.2, seed=0)
    fig, axes = plt.subplots(2, 3, figsize=(12, 8), sharex=True, sharey=True)
    for ax, name in zip(axes.flat, MOONS_INITS):
        row = next(r for r in rows if r["init"] == name and r["seed"] == 0)
        prob = np.array(row["grid_probability"]).reshape(xs.shape)
        ax.contourf(xs, ys, prob, levels=[0, 0.5, 1], colors=["#f4a582", "#92c5de"], alpha=0.8)
        ax.scatter(x_train[:, 0], x_train[:, 1], c=y_train, cmap="RdBu", s=8, edgecolors="none")
        ax.set_title(f"{name}: test accuracy {100 * row['test_accuracy']:.0f}%")
    for ax in axes[1]:
        ax.set_xlabel("x1 (input feature 1)")
    for ax in axes[:, 0]:
        ax.set_ylabel("x2 (input feature 2)")
    key = axes.flat[len(MOONS_INITS)] if len(MOONS_INITS) < axes.size else None
    if key is not None:  # the spare panel explains the colours instead of a legend over the data
        key.axis("off")
        key.text(0.05, 0.5, "Shaded: the class the network predicts\n(orange: class 0, blue: class 1).\n\n"
                 "Dots: the 400 training points,\ncoloured by their true class.\n\nSeed 0's data and weights.",
                 va="center", ha="left", fontsize=11, transform=key.transAxes)
    fig.suptitle("make_moons: decision regions of the Dense 12-6-1 network after training, per initializer")
    save_figure(fig, os.path.join(out, "moons_boundaries.png"))
