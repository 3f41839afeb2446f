"""Studies: tables and files, seeded reproducibility, and backends (local, joblib processes, Dask) agree."""
import json
import os

import numpy as np
import pytest

import fastconv
from fastconv import studies
from fastconv.studies import sweep

SMALL_MOONS = dict(seeds=2, epochs=300, progress=False)
SMALL_MNIST = dict(seeds=2, train=60, test=80, progress=False)
SMALL_DEPTH = dict(seeds=2, n_layers=5, width=32, progress=False)


def _files(out, name, pngs):
    present = set(os.listdir(out))
    assert {f"{name}.md", f"{name}.json", f"{name}.csv"} <= present
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert set(pngs) <= present
    for png in pngs:
        assert os.path.getsize(os.path.join(out, png)) > 10_000  # a real figure, not an empty canvas


def _table_rows(path):
    return [line for line in open(path).read().splitlines()
            if line.startswith("| ") and not line.startswith("| initializer")]


def test_moons_outputs_and_reproducibility(tmp_path):
    rows = studies.moons(out=str(tmp_path / "a"), jobs=1, **SMALL_MOONS)
    assert len(rows) == len(studies.MOONS_INITS) * 2
    _files(tmp_path / "a", "moons", ["moons_loss.png", "moons_boundaries.png"])
    table = _table_rows(tmp_path / "a" / "moons.md")
    assert len(table) == len(studies.MOONS_INITS)
    assert "50 / 50" in table[0] and "50.0 ± 0.0" in table[0]  # zeros never leave 50%, as seed 001 found
    again = studies.moons(out=str(tmp_path / "b"), jobs=2, **SMALL_MOONS)
    assert open(tmp_path / "a" / "moons.md").read() == open(tmp_path / "b" / "moons.md").read()
    assert [r["losses"] for r in rows] == [r["losses"] for r in again]


def test_mnist_init_outputs(tmp_path):
    rows = studies.mnist_init(out=str(tmp_path), jobs=1, **SMALL_MNIST)
    assert len(rows) == len(studies.MNIST_INITS) * 2
    _files(tmp_path, "mnist_init", ["mnist_init.png"])
    table = _table_rows(tmp_path / "mnist_init.md")
    assert len(table) == len(studies.MNIST_INITS) and all("[" in row for row in table)
    assert "LeCun normal is best" in open(tmp_path / "mnist_init.md").read()
    data = json.load(open(tmp_path / "mnist_init.json"))
    assert {r["init"] for r in data["runs"]} == set(studies.MNIST_INITS)


def test_depth_shows_collapse_and_explosion(tmp_path):
    rows = studies.depth(out=str(tmp_path), jobs=1, **SMALL_DEPTH)
    _files(tmp_path, "depth", ["depth.png"])

    def last(init, act):
        return np.mean([r["last_std"] for r in rows if r["init"] == init and r["activation"] == act])

    assert last("N(0, 1)", "relu") > 1e3 * last("He", "relu")          # explosion
    assert last("N(0, 0.01^2)", "relu") < 1e-3 * last("He", "relu")     # collapse
    assert 0.3 < last("He", "relu") < 3                                  # He keeps ReLU activations O(1)
    assert len(rows[0]["stds"]) == 5 and len(rows[0]["grad_norms"]) == 5


def test_run_sweep_local_equals_processes():
    tasks = [dict(init_name="he_normal", seed=s, epochs=50) for s in range(3)]
    serial = studies.run_sweep(studies.moons_run, tasks, jobs=1, progress=False)
    parallel = studies.run_sweep(studies.moons_run, tasks, jobs=2, progress=False)
    assert serial == parallel


def test_sweep_workers_share_the_cores():
    joblib = pytest.importorskip("joblib")
    assert [sweep.threads_per_worker(n, cores=8) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    expected = max(1, joblib.cpu_count() // 2)
    own = fastconv.get_num_threads()
    assert studies.run_sweep(fastconv.get_num_threads, [{}] * 4, jobs=2, progress=False) == [expected] * 4
    if "OPENBLAS_NUM_THREADS" not in os.environ:  # joblib leaves a variable the user set alone
        assert studies.run_sweep(os.getenv, [dict(key="OPENBLAS_NUM_THREADS")] * 2, jobs=2,
                                 progress=False) == [str(expected)] * 2
    assert studies.run_sweep(fastconv.get_num_threads, [{}], jobs=1, progress=False) == [own]  # runs here
    assert fastconv.get_num_threads() == own
    # fewer threads per worker, the same results: conv and dense kernels alike
    tasks = [dict(init_name="glorot_normal", seed=s, train=40, test=40) for s in range(2)]
    assert (studies.run_sweep(studies.mnist_init_run, tasks, jobs=1, progress=False)
            == studies.run_sweep(studies.mnist_init_run, tasks, jobs=2, progress=False))
    # and the study's own statistics: 256x256 gradients are where a threaded BLAS splits a dot product
    tasks = [dict(init_name=name, activation="relu", seed=0, n_layers=2) for name in ("Glorot", "He", "N(0, 1)")]
    assert (studies.run_sweep(studies.depth_run, tasks, jobs=1, progress=False)
            == studies.run_sweep(studies.depth_run, tasks, jobs=2, progress=False))


def test_dask_backend_equals_local():
    pytest.importorskip("joblib")
    distributed = pytest.importorskip("dask.distributed")
    tasks = [dict(init_name=name, seed=s, train=40, test=40)
             for name in ("he_normal", "lecun_uniform") for s in range(2)]
    local = studies.run_sweep(studies.mnist_init_run, tasks, jobs=1, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            on_dask = studies.run_sweep(studies.mnist_init_run, tasks, scheduler=client, progress=False)
            by_address = studies.run_sweep(studies.depth_run,
                                           [dict(init_name="He", activation="relu", seed=0, n_layers=3, width=16)],
                                           scheduler=cluster.scheduler_address, progress=False)
    assert on_dask == local
    assert by_address == [studies.depth_run("He", "relu", 0, n_layers=3, width=16)]


def test_cli_study(tmp_path, capsys):
    import fastconv.cli

    assert fastconv.cli.main(["study", "depth", "--seeds", "1", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| He |" in out and os.path.exists(tmp_path / "depth.md")
    with pytest.raises(SystemExit):
        fastconv.cli.main(["study", "moons", "--seeds", "0"])


# ------------------------------------------------------------- issue 17: trainability, batchnorm, selu, all

TINY_TRAIN = dict(seeds=2, depths=(2, 4), steps=12, width=16, train=640, progress=False)
TINY_BN = dict(seeds=2, steps=8, hidden=2, width=16, train=640, progress=False)
TINY_SELU = dict(seeds=2, steps=8, hidden=4, width=32, train=640, progress=False)


def test_trainability_table_files_and_jobs(tmp_path):
    rows = studies.trainability(out=str(tmp_path / "a"), jobs=1, **TINY_TRAIN)
    assert len(rows) == len(studies.TRAIN_CONFIGS) * 2 * 2
    _files(tmp_path / "a", "trainability", ["trainability_loss.png", "trainability_accuracy.png"])
    text = open(tmp_path / "a" / "trainability.md").read()
    table = [line for line in _table_rows(tmp_path / "a" / "trainability.md") if not line.startswith("| activation")]
    assert len(table) == len(studies.TRAIN_CONFIGS) and all(line.count("±") == 2 for line in table)
    assert "Seed 003's" in text and "He et al. 2015's 30-layer result" in text
    assert all(len(r["losses"]) == 2 and 0 <= r["test_accuracy"] <= 1 for r in rows)  # 12 steps, every 10
    again = studies.trainability(out=str(tmp_path / "b"), jobs=2, **TINY_TRAIN)
    assert open(tmp_path / "b" / "trainability.md").read() == text
    assert [r["losses"] for r in again] == [r["losses"] for r in rows]


def test_trainability_run_is_seeded():
    a = studies.trainability_run("ReLU + He", 3, seed=1, steps=5, width=8, train=320)
    assert a == studies.trainability_run("ReLU + He", 3, seed=1, steps=5, width=8, train=320)
    assert a != studies.trainability_run("ReLU + He", 3, seed=2, steps=5, width=8, train=320)


def test_trainability_verdicts_follow_the_numbers():
    from fastconv.studies.trainability import _verdicts

    depths = (2, 30)
    good = {("sigmoid + Glorot", 2): (88, 1, 1), ("sigmoid + Glorot", 30): (10, 0.1, 0.2),
            ("tanh + Glorot", 2): (92, 1, 1), ("tanh + Glorot", 30): (91, 1, 1),
            ("ReLU + Glorot", 2): (92, 1, 1), ("ReLU + Glorot", 30): (10, 0.1, 0.2),
            ("ReLU + He", 2): (92, 1, 1), ("ReLU + He", 30): (85, 2, 3)}
    text = " ".join(_verdicts(good, depths, 3))
    assert "claim (with" not in text and "holds in this budget" in text and "is reproduced at 30" in text
    bad = dict(good)
    bad["sigmoid + Glorot", 30] = (80, 1, 1)
    bad["ReLU + Glorot", 30] = (86, 1, 1)
    text = " ".join(_verdicts(bad, depths, 3))
    assert "does not hold in this budget" in text and "is not reproduced" in text


def test_spread_ci95():
    from fastconv.studies.stats import spread_ci95

    spread, low, high = spread_ci95([[90.0, 91.0, 92.0], [10.0, 11.0, 12.0]])
    assert spread == 80.0 and 78.0 <= low <= 80.0 <= high <= 82.0
    assert spread_ci95([[1.0, 2.0, 3.0], [1.0, 5.0]]) == spread_ci95([[1.0, 2.0, 3.0], [1.0, 5.0]])


def test_batchnorm_table_files_and_jobs(tmp_path):
    rows = studies.batchnorm(out=str(tmp_path / "a"), jobs=1, **TINY_BN)
    assert len(rows) == len(studies.BN_INITS) * 2 * 2
    assert {(r["init"], r["bn"]) for r in rows} == {(n, bn) for n in studies.BN_INITS for bn in (False, True)}
    _files(tmp_path / "a", "batchnorm", ["batchnorm.png"])
    text = open(tmp_path / "a" / "batchnorm.md").read()
    table = _table_rows(tmp_path / "a" / "batchnorm.md")
    assert len(table) == len(studies.BN_INITS) + 1 and table[-1].startswith("| spread")
    assert "Seed 004's" in text and "Seed 002's" in text
    studies.batchnorm(out=str(tmp_path / "b"), jobs=2, **TINY_BN)
    assert open(tmp_path / "b" / "batchnorm.md").read() == text


def test_selu_table_files_and_fixed_point(tmp_path):
    rows = studies.selu(out=str(tmp_path / "a"), jobs=1, **TINY_SELU)
    assert len(rows) == len(studies.SELU_CONFIGS) * 2
    _files(tmp_path / "a", "selu", ["selu.png"])
    assert all(len(r["init_std"]) == 4 and len(r["trained_std"]) == 4 for r in rows)
    lecun = [r for r in rows if r["config"] == "SELU + LeCun normal"]
    # the self-normalizing fixed point, within finite-width noise (32 units)
    assert all(abs(r["last_mean_init"]) < 0.2 and abs(r["last_std_init"] - 1) < 0.2 for r in lecun)
    text = open(tmp_path / "a" / "selu.md").read()
    table = [line for line in _table_rows(tmp_path / "a" / "selu.md") if not line.startswith("| activation")]
    assert len(table) == len(studies.SELU_CONFIGS) and "Seed 000's" in text
    studies.selu(out=str(tmp_path / "b"), jobs=2, **TINY_SELU)
    assert open(tmp_path / "b" / "selu.md").read() == text


def test_dask_backend_runs_the_mlp_studies():
    pytest.importorskip("joblib")
    distributed = pytest.importorskip("dask.distributed")
    tasks = [dict(config=c, depth=3, seed=s, steps=4, width=8, train=320) for c in ("ReLU + He", "tanh + Glorot")
             for s in range(2)]
    local = studies.run_sweep(studies.trainability_run, tasks, jobs=1, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            assert studies.run_sweep(studies.trainability_run, tasks, scheduler=client, progress=False) == local


def test_without_matplotlib_a_study_says_the_plots_were_skipped(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    studies.depth(out=str(tmp_path), seeds=1, n_layers=3, width=8, progress=False)
    err = capsys.readouterr().err
    assert "fastconv study depth: matplotlib is not installed, so the plots were skipped" in err
    assert "pip install 'fastconv[study]'" in err
    assert os.path.exists(tmp_path / "depth.md") and not os.path.exists(tmp_path / "depth.png")


def test_cli_study_new_names_and_steps(tmp_path, monkeypatch, capsys):
    import fastconv.cli

    calls = []

    def fake(name):
        def run(**kwargs):
            calls.append((name, kwargs))
            os.makedirs(kwargs["out"], exist_ok=True)
            open(os.path.join(kwargs["out"], name + ".md"), "w").write(f"| {name} |\n")
        return run

    for name in ("trainability", "batchnorm", "selu"):
        monkeypatch.setattr(studies, name, fake(name))
        assert fastconv.cli.main(["study", name, "--out", str(tmp_path / name), "--quiet", "--steps", "7"]) == 0
    assert [(n, k["steps"], k["seeds"]) for n, k in calls] == [("trainability", 7, 3), ("batchnorm", 7, 5),
                                                               ("selu", 7, 3)]
    with pytest.raises(SystemExit):
        fastconv.cli.main(["study", "depth", "--steps", "7", "--out", str(tmp_path / "d")])
    assert "--steps" in capsys.readouterr().err and not os.path.exists(tmp_path / "d")
    calls.clear()

    def fake_all(**kwargs):
        calls.append(kwargs)
        return [{"name": "depth", "seconds": 1.0}, {"name": "selu", "seconds": 52.0}]

    monkeypatch.setattr(studies, "study_all", fake_all)
    assert fastconv.cli.main(["study", "all", "--out", str(tmp_path / "all"), "--quiet", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert calls == [dict(out=str(tmp_path / "all"), jobs=1, scheduler=None, progress=False, seeds=None, options={})]
    assert "depth: 1 s" in out and "selu: 52 s" in out and "index.html" in out
