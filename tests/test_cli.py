"""The command line: help and version, every bad option refused with exit code 2 before any work, good paths."""
import importlib.util
import socket
import struct
import sys
import threading

import numpy as np
import pytest

import fastconv
import fastconv.cli
import fastconv.datasets
import fastconv.studies
from fastconv.cli import main


def _work_started(*args, **kwargs):
    pytest.fail("the command started working before it checked its options")


@pytest.fixture
def no_work(monkeypatch):
    """Loading data, building the model and every study fail the test: options must be refused first."""
    monkeypatch.setattr(fastconv.datasets, "load_mnist", _work_started)
    monkeypatch.setattr(fastconv.cli, "seed_cnn", _work_started)
    for name in ("moons", "mnist_init", "depth"):
        monkeypatch.setattr(fastconv.studies, name, _work_started)


def _refused(argv, capsys, match):
    """Run ``fastconv ARGV``; it must exit with code 2 and argparse's one-line error containing ``match``."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fastconv") and ": error: " in last and match in last, err
    assert "Traceback" not in err
    return last


# ---------------------------------------------------------------------------------------------- help

def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "train" in out and "study" in out and "seed 000's CNN on MNIST" in out and "--version" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"fastconv {fastconv.__version__}"


@pytest.mark.parametrize("command, defaults", [
    ("train", ["(default: 0.001)", "(default: 3)", "(default: 32)", "(default: glorot_normal,he_normal,he_normal)"]),
    ("study", ["(default: 15000)", "(default: 1000)", "(default: 1)"]),
])
def test_options_show_their_defaults(capsys, command, defaults):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(d in out for d in defaults), out


def test_no_command_or_an_unknown_one(capsys, no_work):
    _refused([], capsys, "COMMAND")
    _refused(["bogus"], capsys, "invalid choice")


# ------------------------------------------------------------------------------------ bad train options

@pytest.mark.parametrize("argv, match", [
    (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "0"], "--lr"),
    (["--lr", "fast"], "--lr"),
    (["--train", "0"], "--train"), (["--train", "-5"], "--train"), (["--test", "0"], "--test"),
    (["--test", "-1"], "--test"), (["--seed", "-1"], "--seed"), (["--seed", "1.5"], "--seed"),
    (["--epochs", "0"], "--epochs"), (["--batch-size", "-2"], "--batch-size"),
    (["--save", "/nonexistent/dir/m.npz"], "--save"), (["--plot", "/nonexistent/dir/c.png"], "--plot"),
    (["--data", "/nonexistent"], "--data"), (["--init", "bogus"], "--init"), (["--dtype", "float16"], "--dtype"),
])
def test_bad_train_options(capsys, no_work, argv, match):
    _refused(["train"] + argv, capsys, match)


def test_train_save_path_that_is_a_directory(capsys, no_work, tmp_path):
    _refused(["train", "--save", str(tmp_path)], capsys, "is a directory")


def test_train_plot_without_matplotlib_is_refused_first(capsys, no_work, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    _refused(["train", "--plot", str(tmp_path / "c.png")], capsys, "needs matplotlib")


# ------------------------------------------------------------------------------------ bad study options

@pytest.mark.parametrize("argv, match", [
    (["moons", "--epochs", "0"], "--epochs"), (["moons", "--epochs", "-5"], "--epochs"),
    (["mnist-init", "--train", "0"], "--train"), (["mnist-init", "--train", "-1"], "--train"),
    (["mnist-init", "--test", "0"], "--test"), (["mnist-init", "--data", "/nonexistent"], "--data"),
    (["moons", "--seeds", "0"], "--seeds"), (["depth", "--jobs", "0"], "--jobs"),
    (["moons", "--scheduler", "notaurl"], "--scheduler"), (["moons", "--scheduler", "tcp://host:port"], "--scheduler"),
    (["moons", "--scheduler", "http://host:8786"], "--scheduler"),
    (["moons", "--scheduler", "tcp://:8786"], "--scheduler"),
    (["moons", "--scheduler", "tcp://host:99999"], "--scheduler"), (["bogus"], "invalid choice"),
])
def test_bad_study_options(capsys, no_work, argv, match):
    _refused(["study"] + argv, capsys, match)


def test_study_out_naming_a_file(capsys, no_work, tmp_path, monkeypatch):
    (tmp_path / "taken").write_text("a file")
    _refused(["study", "depth", "--out", str(tmp_path / "taken")], capsys, "not a directory")
    _refused(["study", "depth", "--out", str(tmp_path / "taken" / "sub")], capsys, "not a directory")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study-depth").write_text("the default output directory's name, taken by a file")
    _refused(["study", "depth"], capsys, "--out")


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """A TCP server on 127.0.0.1 that sends ``greeting`` to each connection (None: stays silent)."""

    def __init__(self, greeting):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            while True:
                conn, _ = self.sock.accept()
                if self.greeting is not None:
                    conn.sendall(self.greeting)
                self.last = conn  # kept open until close()
        except OSError:
            pass

    def close(self):
        self.sock.close()


needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None or importlib.util.find_spec("joblib")
                                is None, reason="needs dask.distributed and joblib")


@needs_dask
def test_unreachable_scheduler_is_refused_quickly(capsys, no_work, monkeypatch):
    _refused(["study", "moons", "--scheduler", f"tcp://127.0.0.1:{_closed_port()}"], capsys, "cannot reach")
    monkeypatch.setattr(fastconv.cli, "SCHEDULER_TIMEOUT", 0.2)
    silent = _Server(None)
    try:
        _refused(["study", "moons", "--scheduler", f"127.0.0.1:{silent.port}"], capsys, "no answer within 0.2 s")
    finally:
        silent.close()
    web = _Server(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # Dask would read "HTTP/1.1" as a 3.5e18-byte length
    try:
        _refused(["study", "moons", "--scheduler", f"tcp://127.0.0.1:{web.port}"], capsys, "not a Dask handshake")
    finally:
        web.close()


@needs_dask
def test_a_real_dask_scheduler_passes_the_check():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert fastconv.cli._scheduler_address(address) == address
        assert fastconv.cli._scheduler_address(address[len("tcp://"):]) == address


# -------------------------------------------------------------------------------------------- good paths

def _fake_study(calls, name):
    def run(**kwargs):
        calls.append((name, kwargs))
        import os
        os.makedirs(kwargs["out"], exist_ok=True)
        with open(os.path.join(kwargs["out"], name + ".md"), "w") as f:
            f.write(f"| {name} table |\n")
    return run


@pytest.mark.parametrize("argv, name, expected", [
    (["moons", "--seeds", "2", "--epochs", "5"], "moons", dict(seeds=2, epochs=5)),
    (["mnist-init", "--train", "20", "--test", "10"], "mnist_init", dict(seeds=10, train=20, test=10, data=None)),
    (["depth"], "depth", dict(seeds=3)),
])
def test_study_calls_the_study_function(capsys, monkeypatch, tmp_path, argv, name, expected):
    calls = []
    monkeypatch.setattr(fastconv.studies, name, _fake_study(calls, name))
    out = tmp_path / "new" / "dir"
    assert main(["study"] + argv + ["--out", str(out), "--quiet"]) == 0
    assert calls == [(name, dict(expected, out=str(out), jobs=1, scheduler=None, progress=False))]
    printed = capsys.readouterr().out
    assert f"| {name} table |" in printed and f"results in {out}/" in printed


@needs_dask
def test_study_passes_a_checked_scheduler_on(capsys, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(fastconv.studies, "depth", _fake_study(calls, "depth"))
    fake_dask = _Server(struct.pack("Q", 58) + bytes(58))
    try:
        assert main(["study", "depth", "--out", str(tmp_path), "--scheduler", f"127.0.0.1:{fake_dask.port}"]) == 0
    finally:
        fake_dask.close()
    assert calls[0][1]["scheduler"] == f"tcp://127.0.0.1:{fake_dask.port}"


def test_train_saves_a_loadable_model_and_a_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    from fastconv.nn.saving import load_model

    argv = ["train", "--train", "64", "--test", "32", "--epochs", "1", "--batch-size", "16", "--quiet",
            "--save", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "c.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"saved model to {tmp_path / 'm.npz'}" in out and f"saved curves to {tmp_path / 'c.png'}" in out
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (_, _), (xs, _) = fastconv.datasets.load_mnist()
    assert load_model(tmp_path / "m.npz").predict(xs[:4].astype(np.float32) / 255).shape == (4, 10)


def test_train_reports_a_failed_save_without_a_traceback(capsys, monkeypatch, tmp_path):
    def disk_full(model, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fastconv.cli, "save_model", disk_full)
    assert main(["train", "--train", "16", "--test", "8", "--epochs", "1", "--quiet",
                 "--save", str(tmp_path / "m.npz")]) == 1
    assert "cannot save the model" in capsys.readouterr().err


def test_jobs_and_scheduler_without_their_packages_are_refused_first(capsys, no_work, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("joblib", "distributed") else real_find_spec(name, *a))
    _refused(["study", "depth", "--jobs", "2"], capsys, "needs joblib")
    _refused(["study", "depth", "--scheduler", "tcp://127.0.0.1:8786"], capsys, "needs dask.distributed")
