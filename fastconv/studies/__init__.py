"""The seeds' initialization experiments, run properly: many seeds, error bars, tables and plots.

Each study is a function here (so a notebook can call it) and a ``fastconv study NAME`` subcommand. A study
expands into independent, seeded runs (initializer x seed x setting), executes them through
:func:`run_sweep` (joblib processes locally, or a Dask cluster with ``scheduler=``), and writes into ``out``:
``NAME.md`` (the table), ``NAME.json`` and ``NAME.csv`` (raw per-run results) and PNG plots.  Every run
derives all its randomness from its own seed, so results do not depend on the backend or the job count.
"""
import csv
import functools
import json
import math
import os

import numpy as np

from .. import datasets
from ..nn import initializers, layers
from ..nn.model import Sequential
from ..nn.optimizers import SGD, Adam
from ..nn.progress import Progress as _Progress

__all__ = ["run_sweep", "depth", "moons", "mnist_init", "DEPTH_INITS", "MOONS_INITS", "MNIST_INITS"]


# ------------------------------------------------------------------------------------------------ sweeps

def run_sweep(fn, tasks, jobs=1, scheduler=None, progress=True, desc="runs"):
    """``[fn(**task) for task in tasks]``, in parallel.

    jobs : processes for joblib's local backend (1: run here, no joblib needed).
    scheduler : address of a Dask scheduler (``tcp://host:8786``) or a ``dask.distributed.Client``;
        the runs then go through joblib's Dask backend.
    """
    tasks = list(tasks)
    bar = _Progress(len(tasks), desc, progress, unit="run")
    results = []
    if scheduler is None and jobs == 1:
        for task in tasks:
            results.append(fn(**task))
            bar.update(1)
    else:
        try:
            import joblib
        except ImportError as exc:
            raise ImportError("jobs > 1 or a scheduler needs joblib: pip install 'fastconv[study]'") from exc
        calls = (joblib.delayed(fn)(**task) for task in tasks)
        if scheduler is not None:
            try:
                from dask.distributed import Client
            except ImportError as exc:
                raise ImportError("scheduler= needs dask.distributed: pip install 'fastconv[dask]'") from exc
            client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
            try:
                with client.as_current(), joblib.parallel_backend("dask"):
                    for result in joblib.Parallel(return_as="generator")(calls):
                        results.append(result)
                        bar.update(1)
            finally:
                if client is not scheduler:
                    client.close()
        else:
            for result in joblib.Parallel(n_jobs=jobs, return_as="generator")(calls):
                results.append(result)
                bar.update(1)
    bar.close()
    return results


# ------------------------------------------------------------------------------------------------ output

def _mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _ci95(values):
    """95% t-interval half-width of the mean."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return 0.0
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262, 11: 2.228,
         12: 2.201, 13: 2.179, 14: 2.160, 15: 2.145, 16: 2.131, 21: 2.086, 31: 2.042}
    factor = t.get(n, t[max(k for k in t if k <= n)] if n < 31 else 1.96)
    return float(factor * values.std(ddof=1) / math.sqrt(n))


def _write_outputs(out, name, rows, table_md, extra=None):
    """NAME.json (raw rows + extra), NAME.csv (scalar columns), NAME.md (the table)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"runs": rows, **(extra or {})}, f, indent=1)
    scalar_keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
    with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=scalar_keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in scalar_keys})
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write(table_md)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------------- depth

DEPTH_INITS = {
    "N(0, 1)": initializers.RandomNormal(0.0, 1.0),
    "N(0, 0.01^2)": initializers.RandomNormal(0.0, 0.01),
    "LeCun 1/D": initializers.lecun_normal(),
    "Glorot": initializers.glorot_normal(),
    "He": initializers.he_normal(),
}


def depth_run(init_name, activation, seed, n_layers=20, width=256, batch=512):
    """Per-layer activation std and weight-gradient norm of a plain MLP at initialization."""
    rng = np.random.default_rng(seed)
    model = Sequential([layers.Dense(width, activation=activation, kernel_initializer=DEPTH_INITS[init_name])
                        for _ in range(n_layers)], dtype="float64", seed=seed)
    model.build((width,))
    x = rng.standard_normal((batch, width))
    stds = []
    with np.errstate(all="ignore"):
        for layer in model.layers:
            x = layer.forward(x, training=True)
            stds.append(float(x.std()))
        grad = rng.standard_normal(x.shape) / batch
        norms = [0.0] * n_layers
        for i in reversed(range(n_layers)):
            layer = model.layers[i]
            layer.need_dx = i > 0
            grad = layer.backward(grad)
            norms[i] = float(np.linalg.norm(layer.grads["kernel"]))
    return {"init": init_name, "activation": activation, "seed": seed, "last_std": stds[-1],
            "first_grad_norm": norms[0], "stds": stds, "grad_norms": norms}


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
    lines += ["", f"LeCun (std = 1/sqrt(fan_in)) and Glorot (std = sqrt(2/(fan_in + fan_out))) coincide for these square "
              f"{width}x{width} layers. He keeps ReLU activations O(1); N(0, 1) explodes and N(0, 0.01^2) collapses."]
    _write_outputs(out, "depth", rows, "\n".join(lines) + "\n")
    plt = _pyplot()
    if plt is not None:
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
                axes[r, col].grid(alpha=0.3, which="both")
                axes[r, col].legend(fontsize=8)
        fig.suptitle(f"Deep plain MLP ({n_layers} layers x {width} units) at initialization, geometric mean of {seeds} seeds")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "depth.png"), dpi=90)
        plt.close(fig)
    return rows


# ------------------------------------------------------------------------------------------------- moons

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
    """Seed 001's network: Dense 12 ReLU -> 6 ReLU -> 1 sigmoid; the initializer on the hidden layers,
    the output layer with the default (Glorot uniform), biases zero."""
    init = MOONS_INITS[init_name]
    model = Sequential([layers.Dense(12, activation="relu", kernel_initializer=init),
                        layers.Dense(6, activation="relu", kernel_initializer=init),
                        layers.Dense(1, activation="sigmoid")], dtype="float64", seed=seed)
    model.compile(SGD(learning_rate=0.01), "binary_crossentropy", ["accuracy"])
    return model


def moons_run(init_name, seed, epochs=15000, lr=0.01, record_every=100, grid=None):
    """Full-batch gradient descent on make_moons (400 train / 100 test, noise 0.2) for one seed."""
    x_train, y_train = datasets.make_moons(400, noise=0.2, seed=seed)
    x_test, y_test = datasets.make_moons(100, noise=0.2, seed=seed + 10_000)
    model = moons_model(init_name, seed)
    model.optimizer.learning_rate = lr
    model.build((2,))
    x = model._prepare_x(x_train)
    y = model._prepare_y(y_train, len(x))
    losses = []
    for epoch in range(epochs):
        loss, _ = model.train_on_batch(x, y)
        if epoch % record_every == 0 or epoch == epochs - 1:
            losses.append(float(loss))
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
             f"{seeds} seeds", "", "| initializer | train accuracy % | test accuracy % | seed 001 (train/test, one run) |",
             "|---|---|---|---|"]
    for name in MOONS_INITS:
        sel = [r for r in rows if r["init"] == name]
        tr = _mean_std([100 * r["train_accuracy"] for r in sel])
        te = _mean_std([100 * r["test_accuracy"] for r in sel])
        seed_fig = MOONS_SEED_FIGURES.get(name)
        lines.append(f"| {name} | {tr[0]:.1f} ± {tr[1]:.1f} | {te[0]:.1f} ± {te[1]:.1f} | "
                     f"{'%d / %d' % seed_fig if seed_fig else '—'} |")
    lines += ["", "± is the standard deviation over seeds (each seed: its own data draw and initialization)."]
    _write_outputs(out, "moons", rows, "\n".join(lines) + "\n", extra={"grid_x": xs[0].tolist(), "grid_y": ys[:, 0].tolist()})
    plt = _pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(8, 5))
        for name in MOONS_INITS:
            curves = np.array([r["losses"] for r in rows if r["init"] == name])
            steps = np.minimum(np.arange(curves.shape[1]) * 100, epochs - 1)
            mean = curves.mean(axis=0)
            ax.plot(steps, mean, label=name)
            ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
        ax.set(title=f"make_moons training loss (mean, band = min..max over {seeds} seeds)", xlabel="epoch",
               ylabel="binary cross-entropy (nats, log scale)", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "moons_loss.png"), dpi=90)
        plt.close(fig)
        x_train, y_train = datasets.make_moons(400, noise=0.2, seed=0)
        fig, axes = plt.subplots(1, len(MOONS_INITS), figsize=(4 * len(MOONS_INITS), 3.6), sharey=True)
        for ax, name in zip(axes, MOONS_INITS):
            row = next(r for r in rows if r["init"] == name and r["seed"] == 0)
            prob = np.array(row["grid_probability"]).reshape(xs.shape)
            ax.contourf(xs, ys, prob, levels=[0, 0.5, 1], colors=["#f4a582", "#92c5de"], alpha=0.8)
            ax.scatter(x_train[:, 0], x_train[:, 1], c=y_train, cmap="RdBu", s=6, edgecolors="none")
            ax.set(title=f"{name}\ntest acc {100 * row['test_accuracy']:.0f}% (seed 0)", xlabel="x1")
        axes[0].set_ylabel("x2")
        fig.suptitle("Decision boundaries after training (seed 0; orange: class 0, blue: class 1)")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "moons_boundaries.png"), dpi=90)
        plt.close(fig)
    return rows


# -------------------------------------------------------------------------------------------- mnist-init

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
    from ..zoo import seed_cnn

    (x_train, y_train), (x_test, y_test) = _load_mnist_once(data)
    order = np.random.default_rng(seed).permutation(len(y_train))[:train]
    x_train, y_train = x_train[order] / 255.0, y_train[order]
    x_test, y_test = x_test[:test] / 255.0, y_test[:test]
    model = seed_cnn(MNIST_INITS[init_name], dtype="float64", seed=seed)
    model.compile(Adam(learning_rate=1e-3, epsilon=1e-7, epsilon_hat=True), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x_train, y_train, batch_size=1, epochs=1, shuffle=False, verbose=0)
    return {"init": init_name, "seed": seed, "train": train, "test": test,
            "test_accuracy": model.evaluate(x_test, y_test)["accuracy"]}


def mnist_init(out="study-mnist-init", seeds=10, jobs=1, scheduler=None, train=1000, test=1000, data=None,
               progress=True):
    """Seed 000: test accuracy of its CNN per initializer, mean +- std and a 95% interval over ``seeds`` runs.

    Each seed draws its own 1,000 training images, initialization and order.  Writes mnist_init.md/.json/
    .csv and mnist_init.png (a strip plot of every run) into ``out``.
    """
    tasks = [dict(init_name=name, seed=s, train=train, test=test, data=data) for name in MNIST_INITS for s in range(seeds)]
    rows = run_sweep(mnist_init_run, tasks, jobs, scheduler, progress, desc="mnist-init")
    stats = {}
    for name in MNIST_INITS:
        acc = [100 * r["test_accuracy"] for r in rows if r["init"] == name]
        stats[name] = (*_mean_std(acc), _ci95(acc))
    ranked = sorted(stats, key=lambda n: -stats[n][0])
    lines = [f"# mnist-init: seed 000's CNN, per-sample Adam (lr 1e-3, eps 1e-7, eps-hat), {train} train / {test} test "
             f"images, {seeds} seeds", "", "| initializer (conv1, conv2, dense) | test accuracy % (mean ± std) | 95% CI of the mean |",
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
    _write_outputs(out, "mnist_init", rows, "\n".join(lines) + "\n")
    plt = _pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(10, 5))
        rng = np.random.default_rng(0)
        for i, name in enumerate(ranked):
            acc = np.array([100 * r["test_accuracy"] for r in rows if r["init"] == name])
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(acc)), acc, s=14, alpha=0.7)
            m, _, h = stats[name]
            ax.errorbar(i + 0.3, m, yerr=h, fmt="k_", capsize=4, ms=12)
        ax.set_xticks(range(len(ranked)))
        ax.set_xticklabels([n.replace(" (", "\n(") for n in ranked], fontsize=8, rotation=20, ha="right")
        ax.set(title=f"Seed 000 CNN on MNIST: test accuracy per initializer ({seeds} seeds; bars: mean and 95% CI)",
               ylabel="test accuracy (%)")
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "mnist_init.png"), dpi=90)
        plt.close(fig)
    return rows
