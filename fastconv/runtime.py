"""Run-time settings of the compiled core: the thread count, the OpenMP facts and the autotune switch.

Threads
    The kernels run on :func:`get_num_threads` OpenMP threads (default: ``OMP_NUM_THREADS`` or the number
    of cores, capped at :func:`thread_limit`).  Which results are the same bits on any count is in
    docs/numerics.md.

Autotune
    Where splitting small work between threads may not pay (a convolution at batch 1, an Adam step below
    ``_adam.PARALLEL_MIN`` parameters), the first calls of each operation alternate between one thread and
    all threads in timed blocks, and the operation then keeps the faster.  :func:`set_autotune` turns
    these trials off (every call then uses the thread count it is given); :func:`autotune_report` lists
    what they chose.  The choice never changes a result's bits.

Examples
--------
>>> from fastconv import runtime
>>> runtime.set_num_threads(1)
>>> runtime.get_num_threads()
1
>>> runtime.set_autotune(False)
>>> runtime.autotune_enabled()
False
"""
import numbers
import os

import numpy as np

from . import _conv, _runtime

__all__ = [
    "autotune_enabled", "autotune_report", "get_num_threads", "max_threads", "openmp_enabled", "set_autotune",
    "set_num_threads", "thread_limit",
]


# ---------------------------------------------------------------------------------------------- threads

def _compute_thread_limit():
    """4 x the cores, or OpenMP's own limit (``OMP_THREAD_LIMIT``) where that is lower."""
    limit = 4 * (os.cpu_count() or 1)
    try:
        omp_limit = int(os.environ.get("OMP_THREAD_LIMIT", ""))
    except ValueError:  # unset or not a number: libgomp ignores it too
        omp_limit = 0
    return min(limit, omp_limit) if omp_limit >= 1 else limit


_thread_limit = _compute_thread_limit()
_num_threads = max(1, min(int(_runtime.max_threads()), _thread_limit))


def set_num_threads(n):
    """Set the number of OpenMP threads the kernels use.

    Parameters
    ----------
    n : int, ``1 <= n <= thread_limit()``
        The limit is 4x the machine's cores (``os.cpu_count()``), or OpenMP's own limit
        (``OMP_THREAD_LIMIT``) where that is lower: far more threads than cores only slow the kernels
        down, and past some thousands OpenMP cannot create them and the process dies.

    Examples
    --------
    >>> set_num_threads(1)
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"num_threads must be an integer >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"num_threads must be an integer >= 1, got {n!r}")
    if n > _thread_limit:
        raise ValueError(f"num_threads must be at most {_thread_limit} (4x the {os.cpu_count() or 1} cores, "
                         f"or OMP_THREAD_LIMIT where lower), got {n!r}")
    global _num_threads
    _num_threads = int(n)


def get_num_threads():
    """Number of OpenMP threads the kernels use (an int >= 1)."""
    return _num_threads


def thread_limit():
    """The largest thread count :func:`set_num_threads` accepts (see there)."""
    return _thread_limit


def max_threads():
    """Threads OpenMP would use by default (``omp_get_max_threads()``; 1 when built without OpenMP)."""
    return int(_runtime.max_threads())


def openmp_enabled():
    """True when the compiled core was built with OpenMP."""
    return bool(_runtime.have_openmp())


# --------------------------------------------------------------------------------------------- autotune

def set_autotune(enabled):
    """Turn the run-time one-thread-versus-all-threads trials on (the default) or off.

    Off, every call uses :func:`get_num_threads` threads; on, each small operation measures both and
    keeps the faster (see the module docstring).  Results are the same bits either way.
    """
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    _runtime.set_autotune(bool(enabled))


def autotune_enabled():
    """True when the thread trials are on (one switch for every kernel that runs them)."""
    return bool(_runtime.autotune_enabled())


def _shape(kernel, key):
    if kernel == "conv2d":
        C, H, W, F, kh, kw, sh, sw, ph, pw = key[:10]
        return {"channels": C, "height": H, "width": W, "filters": F, "kernel_size": (kh, kw),
                "stride": (sh, sw), "padding": (ph, pw)}
    return {"size": key[0]}


def autotune_report():
    """What the thread trials measured and chose so far, one dict per operation and shape.

    Returns
    -------
    list of dict with keys
        ``kernel`` ("conv2d" or "adam"), ``operation`` ("forward", "backward", "backward_dx" for conv2d
        at batch 1, "update" for adam), ``dtype`` ("float32"/"float64", None where the key does not
        tell), ``shape`` (conv2d: channels, height, width, filters, kernel_size, stride, padding; adam:
        size), ``threads`` ("one", "all", or None while the trials run), ``one_thread_us`` and
        ``all_threads_us`` (the shortest interval measured per call in microseconds, None if not yet
        timed).

    Examples
    --------
    >>> [(c["kernel"], c["operation"], c["threads"]) for c in autotune_report()]  # doctest: +SKIP
    [('conv2d', 'forward', 'one'), ('adam', 'update', 'all')]
    """
    tile_dtypes = {_conv.tile_width(t): np.dtype(t).name for t in (np.float32, np.float64)}
    if len(tile_dtypes) < 2:  # both dtypes use one tile width: the key does not tell them apart
        tile_dtypes = {}
    rows = []
    for entry in _runtime.autotune_report():
        key = entry["key"]
        dtype = tile_dtypes.get(key[-1]) if entry["kernel"] == "conv2d" else key[-1]
        rows.append({"kernel": entry["kernel"], "operation": entry["op"], "dtype": dtype,
                     "shape": _shape(entry["kernel"], key), "threads": entry["choice"],
                     "one_thread_us": entry["one_thread_us"], "all_threads_us": entry["all_threads_us"]})
    return rows
