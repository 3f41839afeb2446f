"""bench/models.py runs end to end on a tiny configuration; the table and JSON have their structure (timings
are not tested)."""
import json
from contextlib import nullcontext

import numpy as np
import pytest
from conftest import load_bench

import fastconv


@pytest.fixture(scope="module")
def models():
    module = load_bench("models", "bench_models")
    module.SETTLE_S = 0.0   # the pause before each timed fit only matters to the timings
    return module


def _frameworks(with_torch):
    if not with_torch:
        return None
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _blas_threads():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


@pytest.mark.parametrize("with_torch", [False, True], ids=["fastconv-only", "with-torch"])
def test_tiny_run_table_and_rows(models, with_torch):
    torch = _frameworks(with_torch)
    before = _blas_threads()
    result = models.run(["mlp_b64", "seed_cnn_b1", "moons_mlp"], rounds=1, threads=1, torch=torch,
                        sizes=(8, 1), progress=None)
    assert _blas_threads() == before   # the fits give the BLAS its threads back
    json.dumps(result)   # serialisable
    rows = result["rows"]
    names = [r["model"] for r in rows]
    assert names[0] == "mlp_b64" and names[-2:] == ["seed_cnn_b1", "moons_mlp"]
    for r in rows:
        assert r["fastconv_us"] > 0 and 0 <= r["fastconv_acc"] <= 1 and len(r["fastconv_rounds_us"]) == 1
        assert r["target"] == (8.0 if r["batch"] == 1 else 1.5)
        assert ("torch_us" in r) == with_torch and ("met" in r) == with_torch
        if with_torch:
            assert r["torch_over_fastconv"] == pytest.approx(r["torch_us"] / r["fastconv_us"])
            assert 0 <= r["torch_acc"] <= 1
    # the MLP again with fit's BLAS pin taken out
    assert [r["variant"] for r in rows[:2]] == ["default", "BLAS on its own threads"]
    assert rows[1]["free_over_default"] == pytest.approx(rows[1]["fastconv_us"] / rows[0]["fastconv_us"])
    table = models.to_markdown(rows, result["machine"])
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    assert "| fastconv µs/sample | PyTorch µs/sample | PyTorch/fastconv | target | met |" in lines[header]
    body = []
    for line in lines[header + 2:]:
        if not line.startswith("| "):
            break
        body.append(line)
    assert len(body) == len(rows)
    assert all(line.count("|") == lines[header].count("|") for line in body)
    assert ("| — | — | ≥ 8x | — |" in table) != with_torch


def test_torch_twin_has_fastconv_weights(models):
    torch = pytest.importorskip("torch")
    for name in ("keras_convnet", "lenet5_b1", "moons_mlp"):
        setup = models.SETUPS[name]
        x, y, xt, yt = models.load_data(setup["data"], setup["dtype"], 4)
        model = models._fastconv_model(setup, x, seed=0)
        net = models.torch_twin(torch, model).eval()
        with torch.no_grad():
            logits = net(torch.from_numpy(xt[:8])).numpy()
        if setup["data"] == "moons":
            probs = 1 / (1 + np.exp(-logits))
        else:
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
        eps = np.finfo(setup["dtype"]).eps
        np.testing.assert_allclose(probs, model.predict(xt[:8]), rtol=0, atol=64 * eps)


@pytest.fixture
def kept_threads():
    """main() sets fastconv's and the BLAS's thread counts for the process: put them back afterwards."""
    try:
        from threadpoolctl import threadpool_limits

        blas = threadpool_limits(None)   # restores the BLAS's thread count on exit
    except ImportError:
        blas = nullcontext()
    threads = fastconv.get_num_threads()
    with blas:
        yield
    fastconv.set_num_threads(threads)


def test_main_writes_json(models, tmp_path, capsys, kept_threads):
    out = tmp_path / "models.json"
    assert models.main(["--quick", "--models", "moons_mlp", "--rounds", "1", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"machine", "rows"} and result["machine"]["quick"] is True
    assert [r["model"] for r in result["rows"]] == ["moons_mlp"]
    assert "| moons MLP 2-12-6-1 |" in capsys.readouterr().out


def test_unknown_model_is_an_error(models):
    with pytest.raises(SystemExit):
        models.main(["--models", "resnet50"])


def test_keras_twin_has_fastconv_weights(models):
    keras = pytest.importorskip("keras")
    models.import_frameworks(1)   # float64 on JAX
    for name in ("keras_convnet", "lenet5_b1", "moons_mlp"):
        setup = models.SETUPS[name]
        x, y, xt, yt = models.load_data(setup["data"], setup["dtype"], 4)
        model = models._fastconv_model(setup, x, seed=0)
        out = np.asarray(models.keras_twin(keras, model)(xt[:8], training=False))
        np.testing.assert_allclose(out, model.predict(xt[:8]), rtol=0, atol=64 * np.finfo(setup["dtype"]).eps)


def test_step_profile_names_the_calls_of_a_step(models):
    setup = models.SETUPS["lenet5_b1"]
    data = models.load_data(setup["data"], setup["dtype"], 16)
    profile = models.step_profile(setup, data, budget_s=0.02, top=5)
    json.dumps(profile)
    assert profile["steps"] >= 5 and profile["calls"] == 23   # LeNet-5's step: 11 forward, loss, 11 backward
    assert 0 < profile["step_us_min"] <= profile["step_us_median"] and profile["update_us"] > 0
    top = profile["top"]
    assert len(top) == 5 and [c["us"] for c in top] == sorted((c["us"] for c in top), reverse=True)
    assert {c["phase"] for c in top} <= {"forward", "loss", "backward"}
    assert any(c["call"].startswith("conv2d_backward (1, 16, 10, 10)") for c in top)


@pytest.mark.parametrize("profile", [True, False])
def test_profile_option_adds_the_profile_and_its_table(models, profile):
    result = models.run(["seed_cnn_b1"], rounds=1, threads=1, sizes=(8, 1), progress=None, profile=profile)
    row = result["rows"][0]
    assert ("profile" in row) == profile
    assert ("Where a training step of seed 000 CNN (batch 1, float64) goes" in models.to_markdown([row])) == profile
