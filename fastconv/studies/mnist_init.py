"""Seed 000: test accuracy of its CNN on MNIST per initializer, with a 95% interval over seeds."""
import functools
import os

import numpy as np

from .. import datasets
from ..nn import initializers
from ..nn.optimizers import Adam
from ..zoo import seed_cnn
from .outputs import write_outputs
from .plots import GRID_ALPHA, SEED_CNN, pyplot, save_figure
from .stats import ci95_half_width, mean_std
from .sweep import run_sweep

__all__ = ["MNIST_INITS", "mnist_init_run", "mnist_init"]

MNIST_INITS = {
    # name: (conv1, conv2, dense) initializers
    "he_normal": ("he_normal",) * 3,
    "he_uniform": ("he_uniform",) * 3,
    "glorot_normal": ("glorot_normal",) * 3,
    "glorot_uniform": ("glorot_uniform",) * 3,
    "lecun_normal": ("lecun_normal",) * 3,
    "lecun_uniform": ("lecun_uniform",) * 3,
    "seed mix (glorot conv1, he after)": ("glorot_normal", "he_normal", "he_normal"),
    "uniform(-0.5, 0.5)": (initializers.RandomUniform(-0.5, 0.5),) * 3,
}


@functools.lru_cache(maxsize=2)
def _load_mnist_once(data):
    """MNIST read once per worker process (runs only index it, which copies)."""
    return datasets.load_mnist(data)


def mnist_init_run(init_name, seed, train=1000, test=1000, data=None):
    """Seed 000's CNN trained one image at a time with the seed's Adam (lr 1e-3, eps 1e-7, eps-hat form)."""
    (x_train, y_train), (x_test, y_test) = _load_mnist_once(data)
    order = np.random.default_rng(seed).permutation(len(y_train))[:train]
    x_train, y_train = x_train[order] / 255.0, y_train[order]
    x_test, y_test = x_test[:test] / 255.0, y_test[:test]
    model = seed_cnn(MNIST_INITS[init_name], dtype="float64", seed=seed)
    model.compile(Adam(learning_rate=1e-3, epsilon=1e-7, epsilon_hat=True), "sparse_categorical_crossentropy",
                  ["accuracy"])
    model.fit(x_train, y_train, batch_size=1, epochs=1, shuffle=False, verbose=0)
    return {"init": init_name, "seed": seed, "train": train, "test": test,
            "test_accuracy": model.evaluate(x_test, y_test)["accuracy"]}


def mnist_init(out="study-mnist-init", seeds=10, jobs=1, scheduler=None, train=1000, test=1000, data=None,
               progress=True):
    """Seed 000: test accuracy of its CNN per initializer, mean +- std and a 95% interval over ``seeds`` runs.

    Each seed draws its own 1,000 training images, initialization and order.  Writes mnist_init.md/.json/
    .csv and mnist_init.png (a strip plot of every run) into ``out``.
    """
    tasks = [dict(init_name=name, seed=s, train=train, test=test, data=data)
             for name in MNIST_INITS for s in range(seeds)]
    rows = run_sweep(mnist_init_run, tasks, jobs, scheduler, progress, desc="mnist-init")
    stats = {}
    for name in MNIST_INITS:
        acc = [100 * r["test_accuracy"] for r in rows if r["init"] == name]
        stats[name] = (*mean_std(acc), ci95_half_width(acc))
    ranked = sorted(stats, key=lambda n: -stats[n][0])
    lines = [f"# mnist-init: seed 000's CNN, per-sample Adam (lr 1e-3, eps 1e-7, eps-hat), {train} train / {test} test "
             f"images, {seeds} seeds", "",
             "| initializer (conv1, conv2, dense) | test accuracy % (mean ± std) | 95% CI of the mean |",
             "|---|---|---|"]
    for name in ranked:
        m, s, h = stats[name]
        lines.append(f"| {name} | {m:.1f} ± {s:.1f} | [{m - h:.1f}, {m + h:.1f}] |")
    best, lecun = ranked[0], stats["lecun_normal"]
    overlapping = [n for n in ranked if abs(stats[n][0] - lecun[0]) <= stats[n][2] + lecun[2]]
    others = [n for n in overlapping if n != "lecun_normal"]
    if best == "lecun_normal" and not others:
        verdict = "holds: LeCun normal has the highest mean and no other 95% interval overlaps its own"
    elif best == "lecun_normal":
        verdict = "is not established: LeCun normal has the highest mean, but its 95% interval overlaps"
    else:
        verdict = (f"is not supported: {best} has the highest mean ({stats[best][0]:.1f}% vs {lecun[0]:.1f}% for "
                   f"LeCun normal), and LeCun normal's 95% interval overlaps")
    lines += ["", f"Seed 000's claim that LeCun normal is best {verdict} those of {len(others)} other setting(s): "
              f"{', '.join(others) or 'none'}."]
    write_outputs(out, "mnist_init", rows, "\n".join(lines) + "\n")
    _plot(rows, out, seeds, ranked, stats)
    return rows


def _plot(rows, out, seeds, ranked, stats):
    """mnist_init.png: every run's test accuracy per initializer (best first), with the mean and its 95% CI."""
    plt = pyplot("mnist-init")
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(11, 6))
    rng = np.random.default_rng(0)
    for i, name in enumerate(ranked):
        acc = np.array([100 * r["test_accuracy"] for r in rows if r["init"] == name])
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(acc)), acc, s=18, alpha=0.7,
                   label="one run (one seed)" if i == 0 else None, color="tab:blue")
        m, _, h = stats[name]
        ax.errorbar(i + 0.3, m, yerr=h, fmt="k_", capsize=4, ms=12, label="mean and 95% interval" if i == 0 else None)
    ax.set_xticks(range(len(ranked)))
    ax.set_xticklabels([n.replace(" (", "\n(") for n in ranked], rotation=25, ha="right")
    ax.set(title=f"MNIST test accuracy of {SEED_CNN}\nper initializer, {seeds} seeds, best first",
           xlabel="initializer (the same on conv1, conv2 and dense, except the seed's own mix)",
           ylabel="test accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=GRID_ALPHA, axis="y")
    save_figure(fig, os.path.join(out, "mnist_init.png"))
