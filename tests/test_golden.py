"""The training trajectories recorded before the one-path redesign reproduce bit for bit.

``tests/data/golden.json`` holds, for each case and thread count, the loss of every optimizer step and the
SHA-256 of the final parameters (``tools/record_golden.py``; the cases are in ``golden_cases.py``).  The
conv kernels' reduction order follows the CPU's vector width, so the bits are checked where the build key
(machine and widest vector ISA) matches the recording; elsewhere the losses are held to a float tolerance.
"""
import json
import os

import golden_cases
import numpy as np
import pytest

with open(os.path.join(os.path.dirname(__file__), "data", "golden.json")) as _f:
    GOLDEN = json.load(_f)

SAME_BUILD = GOLDEN["build"] == golden_cases.build_key()


@pytest.mark.parametrize("key", sorted(GOLDEN["cases"]))
def test_golden_trajectory(key):
    name, threads = key.split("@")
    losses, digest = golden_cases.run(name, int(threads))
    expected = GOLDEN["cases"][key]
    assert len(losses) == len(expected["losses"])
    if SAME_BUILD:
        assert losses == expected["losses"]
        assert digest == expected["params_sha256"]
    else:
        rtol = 1e-4 if "f32" in name else 1e-9
        np.testing.assert_allclose(losses, expected["losses"], rtol=rtol)
