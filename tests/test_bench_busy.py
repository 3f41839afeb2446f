"""bench/busy.py runs end to end on a tiny job, quiet and with a spinning process; its table and JSON have
their structure (timings are not tested)."""
import json

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def busy():
    module = load_bench("busy", "bench_busy")
    module.models.SETTLE_S = 0.0
    return module


def test_busy_bench_runs_quiet_and_loaded(busy, tmp_path):
    result = busy.run(rounds=1, load=1, threads=2, torch=None, sizes=(96, 1), progress=None)
    names = [r["name"] for r in result["rows"]]
    assert names == ["fastconv train (default)", "fastconv train, FASTCONV_ADAPTIVE_THREADS=0",
                     "fit, fastconv (default)", "fit, fastconv, adaptive threads off"]
    for row in result["rows"]:
        assert row["quiet"] > 0 and row["busy"] > 0 and len(row["quiet_rounds"]) == len(row["busy_rounds"]) == 1
        assert row["busy_over_quiet"] == pytest.approx(row["busy"] / row["quiet"])
    assert result["machine"]["load_processes"] == 1 and result["machine"]["samples"] == 96
    table = busy.to_markdown(result)
    assert "| fastconv train (default) | s |" in table and "fastconv train busy/quiet:" in table
    json.dumps(result)


def test_busy_bench_stops_its_load(busy):
    procs = busy.start_load(2)
    busy.stop_load(procs)
    assert all(p.poll() is not None for p in procs)
