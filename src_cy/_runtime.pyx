# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Run-time facts and choices shared by every kernel module: OpenMP, and the thread-count trials.

Whether splitting a small piece of work between threads pays depends on the machine: the threads' cores
trade the cache lines of the data, a fixed cost that beats the saving on some machines and not on others.
So a ``Trials`` object runs the first TRIALS calls of its operation in blocks of TRIAL_BLOCK calls,
alternately on one thread and on all threads, then keeps whichever was faster (all threads only when
they beat one thread's best by MARGIN).

What is timed is the interval from the start of one call to the start of the next, not the call itself:
in a training loop that is a whole step, so it also counts what the choice costs the code between calls
(an idle OpenMP thread spinning on the other core, data left in the other core's cache).  Blocks, not
alternate calls, so that every operation of a training step switches at the same step, and blocks, not
halves, because the first steps of a run are slow for reasons unrelated to the choice.  Two intervals of
each block are not timed: the one after its first call, which pays for the switch, and the one after its
last call, in which the operations that come earlier in a step already run in the next block's mode.
The machine's load changes, so after RETRY decided calls the trials run again.  Kernels use trials only
where the thread count cannot change a result's bits.

One switch (``set_autotune``) turns the trials off in every module; ``autotune_report`` lists what they
chose.  Only ``fastconv`` itself imports this module.
"""
from time import perf_counter

cdef extern from "fc_omp.h" nogil:
    int fc_max_threads()
    int fc_have_openmp()

# Trial knobs, read at every trial call (tests shorten them).
TRIALS = 32         # trial calls before a decision: a multiple of 2 * TRIAL_BLOCK
TRIAL_BLOCK = 4     # consecutive calls in one mode
MARGIN = 0.9        # all threads must beat one thread's best interval by this factor
RETRY = 2000        # decided calls before the trials run again

cdef bint _autotune = True
cdef dict _registry = {}     # (kernel, op, key) -> Trials
cdef enum:
    REGISTRY_MAX = 4096      # a bound, as the conv plan cache has one


cdef int omp_max_threads() noexcept nogil:
    return fc_max_threads()


cdef bint omp_available() noexcept nogil:
    return fc_have_openmp() != 0


def max_threads():
    """Threads OpenMP would use by default (1 when built without OpenMP)."""
    return fc_max_threads()


def have_openmp():
    """True when the extensions were compiled with OpenMP."""
    return bool(fc_have_openmp())


def set_autotune(enabled):
    """Turn the thread-count trials on or off for every kernel.  Off, each call uses the thread count it
    is given; on again, operations that had decided keep their choice until their next retry."""
    global _autotune
    _autotune = bool(enabled)


def autotune_enabled():
    """True while the thread-count trials run."""
    return _autotune


def autotune_report():
    """What the trials measured and chose, one dict per operation that has run a trial.

    Keys: ``kernel`` (e.g. "conv2d", "adam"), ``op`` (e.g. "forward"), ``key`` (the shape key of the
    operation), ``choice`` ("one", "all", or None while undecided), ``one_thread_us`` and
    ``all_threads_us`` (the shortest interval measured in each mode, in microseconds; None if that mode
    has not been timed yet).
    """
    out = []
    for t in list(_registry.values()):
        r = (<Trials>t).report()
        if r is not None:
            out.append({"kernel": (<Trials>t).kernel, "op": (<Trials>t).op, "key": (<Trials>t).key,
                        "choice": r[0], "one_thread_us": r[1] if r[1] < 1e300 else None,
                        "all_threads_us": r[2] if r[2] < 1e300 else None})
    return out


cdef Trials trials_for(str kernel, str op, object key):
    """The Trials of one operation (made on first use and kept in the report's registry)."""
    k = (kernel, op, key)
    t = _registry.get(k)
    if t is None:
        if len(_registry) >= REGISTRY_MAX:
            _registry.clear()
        t = Trials(kernel, op, key)
        _registry[k] = t
    return <Trials>t


cdef class Trials:
    def __init__(self, kernel="", op="", key=None):
        self.kernel, self.op, self.key = kernel, op, key
        self.reset()

    cdef void reset(self) noexcept:
        self.calls = 0
        self.serial = -1
        self.since = 0
        self.best[0] = self.best[1] = 1e300
        self.last_used = 0

    cdef int threads(self, int nthreads) except -1:
        """The thread count for a call with ``nthreads`` available (a trial's is timed from here)."""
        cdef double now
        cdef int k
        if nthreads <= 1 or not _autotune:
            return nthreads
        if self.serial >= 0:
            self.since += 1
            if self.since <= RETRY:
                return 1 if self.serial else nthreads
            self.reset()
        now = perf_counter()
        # the previous call's interval, unless that call began its block (the switch) or ended it (the
        # operations called before this one in the step ran in the next block's mode)
        if self.last_used and (self.calls - 1) % TRIAL_BLOCK and self.calls % TRIAL_BLOCK:
            k = 0 if self.last_used == 1 else 1
            self.best[k] = min(self.best[k], now - self.last)
        self.calls += 1
        if self.calls > TRIALS:
            self.serial = 0 if self.best[1] < MARGIN * self.best[0] else 1
            self.since = 1
            return 1 if self.serial else nthreads
        self.last = now
        self.last_used = nthreads if (self.calls - 1) // TRIAL_BLOCK % 2 else 1
        return self.last_used

    def report(self):
        """(threads chosen: "one", "all" or None while undecided, shortest one-thread and all-threads
        interval in us), or None before any trial."""
        if not self.calls:
            return None
        return (None if self.serial < 0 else "one" if self.serial else "all",
                round(self.best[0] * 1e6, 1), round(self.best[1] * 1e6, 1))
