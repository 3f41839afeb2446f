"""Run-time settings of the compiled core: the thread count, the OpenMP facts and the autotune switch.

Threads
    The kernels run on :func:`get_num_threads` OpenMP threads (default: ``OMP_NUM_THREADS`` or the number
    of cores, capped at :func:`thread_limit`).  Which results are the same bits on any count is in
    docs/numerics.md.

Adaptive threads (a busy machine)
    OpenMP threads wait for each other by spinning; when another process holds one of the cores, a
    thread that has lost its core stalls every parallel region until the scheduler gives it back, and
    training can run several times slower than on one thread.  ``fit`` therefore watches its own steps in
    windows of about 50 ms (:class:`ThreadGovernor`): when the process gets less CPU time than its
    threads would use (CPU time / wall time below 0.8 x the threads), it tries half the threads for one
    window and keeps them if that runs faster; while below :func:`get_num_threads` and the machine has an
    idle core again, it tries more.  On a quiet machine it measures and never changes anything.  Results
    are the same bits on any thread count (docs/numerics.md), so the switches never change a result.
    :func:`set_adaptive_threads` turns it off; :func:`adaptive_threads_report` tells what the last fit did.

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
import contextlib
import numbers
import os
import time

import numpy as np

from . import _conv, _runtime

__all__ = [
    "ThreadGovernor", "adaptive_threads", "adaptive_threads_enabled", "adaptive_threads_report", "autotune_enabled",
    "autotune_report", "get_num_threads", "max_threads", "openmp_enabled", "set_adaptive_threads", "set_autotune",
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


# ------------------------------------------------------------------------------------- adaptive threads

_adaptive = os.environ.get("FASTCONV_ADAPTIVE_THREADS", "1").strip().lower() not in ("0", "false", "no", "off")
_last_report = []


def set_adaptive_threads(enabled):
    """Let ``fit`` lower its thread count on a busy machine and raise it again when cores free up (the
    default; the environment variable ``FASTCONV_ADAPTIVE_THREADS=0`` starts with it off).  See the
    module docstring and :class:`ThreadGovernor`."""
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    global _adaptive
    _adaptive = bool(enabled)


def adaptive_threads_enabled():
    """True when ``fit`` adapts its thread count to a busy machine (see :func:`set_adaptive_threads`)."""
    return _adaptive


def adaptive_threads_report():
    """What the thread governor of the last ``fit`` did: a list of dicts, one per measured window, with
    ``threads``, ``seconds`` (wall time of the window), ``samples``, ``us_per_sample``, ``cpu_per_wall``
    (CPU time of the process over wall time), ``idle_cores`` (None where unknown or not read) and
    ``action`` ("keep", "probe", "take", "back" or "settle").  Empty after a fit it did not govern."""
    return [dict(row) for row in _last_report]


def _cpu_times():
    """(idle, total) jiffies of the whole machine from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    values = [int(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user
    total = sum(values[:8])
    return values[3] + (values[4] if len(values) > 4 else 0), total


class ThreadGovernor:
    """Chooses ``fit``'s thread count from what its steps measure (see the module docstring).

    The loop calls :meth:`tick` after each step with the step's samples and then uses :attr:`threads`,
    which changes only at the end of a window; :meth:`pause` and :meth:`resume` leave out what is not a
    training step (compiling a step, validation).

    Windows last at least ``window_s`` seconds and ``min_steps`` steps.  The first window after a change
    settles (caches, new buffers) and is not compared.  At ``home`` threads, a window whose CPU time is
    under ``oversubscribed`` x threads x wall time leads to a probe of half the threads; when the home
    count is below the top and the machine shows an idle core (``/proc/stat``; always, where it cannot
    tell), a probe of twice the threads follows after some windows.  A probe is taken when its time per
    sample is ``gain`` times better than home's; otherwise the gap before the next probe that way
    doubles, up to ``max_gap`` windows.  When ``current()`` (the thread count in force) is not what the
    governor set, the run has chosen its own count, and the governor stops (``off``).
    """

    def __init__(self, threads, *, window_s=0.05, min_steps=4, oversubscribed=0.8, gain=1.08, max_gap=64,
                 clock=time.perf_counter, cpu_clock=time.process_time, cpu_times=_cpu_times, cores=None,
                 current=get_num_threads):
        self.top = self.home = self.threads = int(threads)
        self.window_s, self.min_steps, self.oversubscribed, self.gain = window_s, min_steps, oversubscribed, gain
        self.max_gap = max_gap
        self.cores = cores or os.cpu_count() or 1
        self._clock, self._cpu_clock, self._cpu_times, self._current = clock, cpu_clock, cpu_times, current
        self._gap = {-1: 1, 1: 4}       # windows at home before a probe down (-1) or up (+1)
        self._since = 0                 # windows at home since the last probe or change
        self._home_rate = None          # seconds per sample of home's last window
        self._settle = True
        self.off = False                # set when the run changes the thread count itself
        self.report = []
        self.restart()

    def restart(self):
        """Start a new window now (what ran since the last tick is not counted)."""
        self._t0, self._c0, self._steps, self._samples = self._clock(), self._cpu_clock(), 0, 0
        self._check = self.min_steps
        self._idle0 = self._cpu_times() if self.home < self.top else None
        self._paused = None

    def pause(self):
        """Stop counting time (before work that is not a training step: compiling a step, validation)."""
        if self._paused is None:
            self._paused = (self._clock(), self._cpu_clock())

    def resume(self):
        """Count time again; the window in progress goes on without the paused interval."""
        if self._paused is not None:
            t, c = self._paused
            self._t0 += self._clock() - t
            self._c0 += self._cpu_clock() - c
            self._paused = None

    def tick(self, samples):
        """Count one step of ``samples``; returns True when :attr:`threads` changed.  Cheap between the
        window's clock reads (a few additions), which come only as often as the window could be over."""
        self._steps += 1
        self._samples += samples
        if self._steps < self._check or self.off:
            return False
        return self._window()

    def _window(self):
        wall = self._clock() - self._t0
        if wall < self.window_s:
            # read the clock again about halfway through what is left of the window at this pace
            self._check = self._steps + max(1, int(self._steps * (self.window_s - wall) / (2 * wall or 1e-9)))
            return False
        if self._current is not None and self._current() != self.threads:
            self.off = True      # the run set its own count (a callback): leave it be
            return False
        cpu = self._cpu_clock() - self._c0
        idle = self._idle_cores(self._idle0, self._cpu_times() if self._idle0 is not None else None)
        rate = wall / self._samples
        row = {"threads": self.threads, "seconds": wall, "samples": self._samples, "us_per_sample": rate * 1e6,
               "cpu_per_wall": cpu / wall, "idle_cores": idle}
        before = self.threads
        row["action"] = self._decide(rate, cpu / wall, idle)
        self.report.append(row)
        self.restart()
        return self.threads != before

    def _idle_cores(self, first, last):
        if first is None or last is None or last[1] <= first[1]:
            return None
        return self.cores * (last[0] - first[0]) / (last[1] - first[1])

    def _decide(self, rate, load, idle):
        if self._settle:
            self._settle = False
            return "settle"
        if self.threads != self.home:        # a probe ends
            step = 1 if self.threads > self.home else -1
            if rate * self.gain < self._home_rate:
                self.home, self._home_rate = self.threads, rate
                self._gap[step], self._gap[-step], self._since = 1, 4, 0
                return "take"
            self._gap[step] = min(self.max_gap, 2 * self._gap[step])
            self._move(self.home)
            return "back"
        self._home_rate, self._since = rate, self._since + 1
        if self.home > 1 and load < self.oversubscribed * self.home and self._since >= self._gap[-1]:
            self._move(max(1, self.home // 2))
            return "probe"
        if (self.home < self.top and self._since >= self._gap[1]
                and (idle is None or idle >= 0.5 * min(self.home, self.top - self.home))):
            self._move(min(self.top, 2 * self.home))
            return "probe"
        return "keep"

    def _move(self, threads):
        self.threads, self._since, self._settle = threads, 0, True


@contextlib.contextmanager
def adaptive_threads():
    """The :class:`ThreadGovernor` of one training run, or None where it does not govern (turned off, one
    thread, no OpenMP).  On exit the thread count is restored (unless the run set its own) and the
    governor's windows become :func:`adaptive_threads_report`."""
    threads = _num_threads
    if not _adaptive or threads < 2 or not openmp_enabled():
        _last_report.clear()
        yield None
        return
    governor = ThreadGovernor(threads)
    try:
        yield governor
    finally:
        if _num_threads == governor.threads:
            set_num_threads(threads)
        _last_report[:] = governor.report
