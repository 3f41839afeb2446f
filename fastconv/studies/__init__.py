"""The seeds' initialization experiments, run properly: many seeds, error bars, tables and plots.

Each study is a function here (so a notebook can call it) and a ``fastconv study NAME`` subcommand. A study
expands into independent, seeded runs (initializer x seed x setting), executes them through
:func:`run_sweep` (joblib processes locally, or a Dask cluster with ``scheduler=``), and writes into ``out``:
``NAME.md`` (the table), ``NAME.json`` and ``NAME.csv`` (raw per-run results) and PNG plots.  Every run
derives all its randomness from its own seed, so results do not depend on the backend or the job count.

Modules: :mod:`~fastconv.studies.sweep` (the runner), :mod:`~fastconv.studies.stats` (mean, std, 95%
interval), :mod:`~fastconv.studies.outputs` (the .json/.csv/.md files), :mod:`~fastconv.studies.plots`
(matplotlib and the shared figure styling), :mod:`~fastconv.studies.mlp` (MNIST as vectors and the step-budget
training loop of the MLP studies), :mod:`~fastconv.studies.report` (``study all``: every study and one HTML and
markdown report), and one module per study: ``depth``, ``trainability``, ``batchnorm``, ``selu``, ``moons``,
``mnist_init``.
The study functions re-exported here share their modules' names, so ``fastconv.studies.depth`` is the
function; reach a study's module with ``from fastconv.studies.depth import depth_run`` or through
``sys.modules``.
"""
from .batchnorm import BN_INITS, batchnorm, batchnorm_model, batchnorm_run
from .depth import DEPTH_INITS, depth, depth_run
from .mnist_init import MNIST_INITS, mnist_init, mnist_init_run
from .moons import MOONS_INITS, MOONS_SEED_FIGURES, moons, moons_model, moons_run
from .report import STUDIES, study_all, write_report
from .selu import SELU_CONFIGS, selu, selu_model, selu_run
from .sweep import run_sweep
from .trainability import TRAIN_CONFIGS, TRAIN_DEPTHS, trainability, trainability_run

__all__ = ["run_sweep", "depth", "moons", "mnist_init", "trainability", "batchnorm", "selu", "study_all",
           "write_report", "STUDIES", "DEPTH_INITS", "MOONS_INITS", "MNIST_INITS", "BN_INITS",
           "SELU_CONFIGS", "TRAIN_CONFIGS", "TRAIN_DEPTHS", "MOONS_SEED_FIGURES", "depth_run", "moons_run",
           "moons_model", "mnist_init_run", "trainability_run", "batchnorm_run", "batchnorm_model", "selu_run",
           "selu_model"]
