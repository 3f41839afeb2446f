"""Benchmark every fastconv kernel (see fastconv/benchmarks.py; also installed as ``fastconv-bench``)."""
import sys

from fastconv.benchmarks import main

if __name__ == "__main__":
    sys.exit(main())
