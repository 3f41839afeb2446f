"""The benchmark's Adam section runs end to end on a small size (timings themselves are not tested)."""
import platform

import numpy as np

from fastconv import benchmarks


def test_bench_adam_row(capsys):
    rows = benchmarks.bench_adam(None, np.float32, [1000])
    (row,) = rows
    assert row["kernel"] == "adam_update" and row["fast_us"] > 0 and row["naive_numpy_us"] > 0
    if platform.libc_ver()[0] == "glibc":   # the naive update timed again with glibc keeping its memory
        assert row["naive_warm_us"] > 0 and row["speedup_vs_naive_warm"] > 0
    assert "adam_update" in capsys.readouterr().out
    table = benchmarks.to_markdown({}, rows)
    assert "| adam_update | 1e+03 params | float32 |" in table


def test_naive_update_warm_skips_what_glibc_cannot_keep():
    assert benchmarks.naive_adam_allocator_warm(5_000_000, np.float64) is None   # 40 MB temporaries


def test_bench_norm_pool_rows(capsys):
    rows = benchmarks.bench_norm_pool(None, np.float64, batches=(1,))
    assert [r["kernel"] for r in rows] == ["batchnorm2d fwd+bwd", "avgpool2d fwd+bwd"]
    assert all(r["fast_us"] > 0 and r["ref_us"] > 0 for r in rows)
    assert "batchnorm2d fwd+bwd" in capsys.readouterr().out
