"""Importing fastconv from a source tree whose extensions are not built says so and how to fix it."""
import os
import shutil
import subprocess
import sys

import fastconv


def test_unbuilt_source_tree_gives_a_clear_import_error(tmp_path):
    src = os.path.dirname(fastconv.__file__)
    shutil.copytree(src, tmp_path / "fastconv",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "data"))
    # an editable install's finder would resolve fastconv._conv to the built checkout: leave it out
    code = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; import fastconv"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastconv's compiled extensions")
    assert "pip install -e ." in last and "outside the checkout" in last
