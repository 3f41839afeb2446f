"""fastconv: fast from-scratch convolutional-network training on the CPU.

- :mod:`fastconv.ops`        validated Cython kernels on NumPy arrays (conv2d, ReLU, max-pool, Adam, SGD, CE)
- :mod:`fastconv.reference`  their slow, obviously-correct NumPy twins (same signatures)
- :mod:`fastconv.initializers` He/Glorot/LeCun/... presets of one VarianceScaling core, PyTorch fans
- :mod:`fastconv.runtime`    thread count, OpenMP facts, the autotune switch and its report
"""
from . import datasets, initializers, layers, ops, optimizers, reference, runtime
from .models import History, Sequential, load_model
from .ops import get_num_threads, set_num_threads

__version__ = "0.1.0"
__all__ = ["Sequential", "History", "load_model", "layers", "optimizers", "datasets", "initializers", "ops", "reference", "runtime", "get_num_threads", "set_num_threads", "__version__"]
