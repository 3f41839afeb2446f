"""fastconv: fast from-scratch convolutional-network training on the CPU.

- :mod:`fastconv.ops`          validated Cython kernels on NumPy arrays (conv2d, dense, ReLU, max-pool, Adam, SGD, CE)
- :mod:`fastconv.reference`    their slow, obviously-correct NumPy twins (same signatures)
- :mod:`fastconv.nn`           layers, initializers, optimizers, the ``Sequential`` model and its training loop
- :mod:`fastconv.datasets`     MNIST (an embedded subset or your files) and make_moons
- :mod:`fastconv.zoo`          the seed networks
- :mod:`fastconv.runtime`      thread count, OpenMP facts, the autotune switch and its report
"""
import os as _os
import sys as _sys

try:
    from . import ops
except ImportError as _exc:
    from importlib.machinery import EXTENSION_SUFFIXES as _SUFFIXES

    _here = _os.path.dirname(__file__)
    if any(_f.startswith("_conv") and _f.endswith(tuple(_SUFFIXES)) for _f in _os.listdir(_here)):
        raise
    raise ImportError(  # a source checkout whose extensions were never built
        f"fastconv's compiled extensions (fastconv._conv, ...) are not built in {_here}: this looks like a "
        "source checkout. Build them in place with `pip install -e .` (then `python -m pytest` works from the "
        "checkout root), or install with `pip install .` and run from outside the checkout.") from _exc
from . import datasets, reference, runtime  # datasets imports nothing of fastconv: its place here is free
from .nn import initializers, layers, optimizers
from .nn.callbacks import History
from .nn.model import Sequential, load_model
from .ops import get_num_threads, set_num_threads

# ``import fastconv.layers`` (and the other public names) keeps working: they are the nn modules.
for _name, _module in (("layers", layers), ("initializers", initializers), ("optimizers", optimizers)):
    _sys.modules[f"{__name__}.{_name}"] = _module

__version__ = "0.1.0"
__all__ = ["Sequential", "History", "load_model", "layers", "optimizers", "datasets", "initializers", "ops",
           "reference", "runtime", "get_num_threads", "set_num_threads", "__version__"]
