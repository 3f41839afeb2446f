"""Record golden training trajectories: per-step losses and a hash of the final parameters.

Run on a commit whose results are the contract (``python tools/record_golden.py``); it writes
``tests/data/golden.json``, which ``tests/test_golden.py`` replays bit for bit.  The cases are defined in
``tests/golden_cases.py`` so that the recorder and the test build exactly the same runs.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import golden_cases  # noqa: E402


def main():
    out = {"recorded": "on 1 thread", "build": golden_cases.build_key(), "cases": {}}
    for name in golden_cases.CASES:
        losses, digest = golden_cases.run(name, 1)   # any thread count gives the same bits
        out["cases"][name] = {"losses": losses, "params_sha256": digest}
        print(f"{name}: {len(losses)} steps, last loss {losses[-1]!r}, {digest[:12]}")
    path = os.path.join(HERE, "..", "tests", "data", "golden.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
