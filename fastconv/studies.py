"""The seeds' initialization experiments, run properly: many seeds, error bars, tables and plots.

Each study is a function here (so a notebook can call it) and a ``fastconv study NAME`` subcommand. A study
expands into independent, seeded runs (initializer x seed x setting), executes them through
:func:`run_sweep` (joblib processes locally, or a Dask cluster with ``scheduler=``), and writes into ``out``:
``NAME.md`` (the table), ``NAME.json`` and ``NAME.csv`` (raw per-run results) and PNG plots.  Every run
derives all its randomness from its own seed, so results do not depend on the backend or the job count.
"""
import csv
import json
import math
import os

import numpy as np

from . import datasets, initializers, layers
from .models import Sequential
from .optimizers import SGD, Adam

__all__ = ["run_sweep", "depth", "moons", "mnist_init", "DEPTH_INITS", "MOONS_INITS", "MNIST_INITS"]


# ------------------------------------------------------------------------------------------------ sweeps

def run_sweep(fn, tasks, jobs=1, scheduler=None, progress=True, desc="runs"):
    """``[fn(**task) for task in tasks]``, in parallel.

    jobs : processes for joblib's local backend (1: run here, no joblib needed).
    scheduler : address of a Dask scheduler (``tcp://host:8786``) or a ``dask.distributed.Client``;
        the runs then go through joblib's Dask backend.
    """
    tasks = list(tasks)
    bar = _progress_bar(len(tasks), desc) if progress else None
    results = []
    if scheduler is None and jobs == 1:
        for task in tasks:
            results.append(fn(**task))
            if bar is not None:
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
                        if bar is not None:
                            bar.update(1)
            finally:
                if client is not scheduler:
                    client.close()
        else:
            for result in joblib.Parallel(n_jobs=jobs, return_as="generator")(calls):
                results.append(result)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return results


class _TextBar:
    def __init__(self, total, desc):
        self.total, self.n, self.desc = total, 0, desc

    def update(self, n):
        self.n += n
        print(f"\r{self.desc}: {self.n}/{self.total}", end="", flush=True)

    def close(self):
        print()


def _progress_bar(total, desc):
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="run")
    except ImportError:
        return _TextBar(total, desc)


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
