"""The examples run as scripts."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_seed_cnn_example_runs_and_learns():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "seed_cnn.py"),
                          "--trains", "300", "--tests", "200"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    accuracy = float(out.split("test accuracy:")[1])
    assert accuracy > 0.5, out  # 300 per-sample steps: far above chance (0.1)
