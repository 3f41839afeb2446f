# Shared by the kernel modules (include "fc_trials.pxi"): choosing between one thread and all threads
# for small work by measuring both, on the machine at hand.
#
# Whether splitting a small piece of work between threads pays depends on the machine: the threads'
# cores trade the cache lines of the data (on a 2-core Zen 5 ~8 ns a line, a 357 ns round trip), and
# that fixed cost beats the saving there, while on a 2-core Zen 1 at 2 GHz, where the same arithmetic is
# 5-9x slower, the split wins (seed conv1 float64 at batch 1: 71 -> 53 us; Adam on 9,578 float64
# parameters, bound by exact square roots and divisions: 47 us on one core).  So a _Trials object runs
# the first TRIALS calls of its operation half on one thread and half on all threads, then keeps
# whichever was faster (all threads only when they beat one thread's best by MARGIN).  Halves, not
# alternate calls: in a training loop every operation switches at the same step, so each half sees the
# data placement it will have for good; alternating made each trial pay for the other's cache state.
# The machines are shared and the other core is sometimes busy, so after RETRY decided calls the trials
# run again.  Callers only use it where the thread count cannot change a result's bits.
from time import perf_counter

# Switch the trials off (tests): every call then uses the thread count it is given.
AUTOTUNE = True
TRIALS = 12
MARGIN = 0.9
RETRY = 2000


cdef class _Trials:
    cdef int calls           # trials so far
    cdef int serial          # -1 undecided, 1 one thread, 0 all threads
    cdef long since          # calls since the decision
    cdef double best[2]      # fastest trial in seconds: one thread, all threads

    def __cinit__(self):
        self.reset()

    cdef void reset(self):
        self.calls = 0
        self.serial = -1
        self.since = 0
        self.best[0] = self.best[1] = 1e300

    cdef inline bint active(self, int nthreads):
        """Whether a call with ``nthreads`` available is a trial (time it and record())."""
        return nthreads > 1 and self.serial < 0 and AUTOTUNE

    cdef inline int threads(self, int nthreads):
        """The thread count for a call with ``nthreads`` available."""
        if nthreads <= 1 or not AUTOTUNE:
            return nthreads
        if self.serial >= 0:
            self.since += 1
            if self.since <= RETRY:
                return 1 if self.serial else nthreads
            self.reset()
        return 1 if 2 * self.calls < TRIALS else nthreads

    cdef void record(self, int used, double seconds):
        cdef int k = 0 if used == 1 else 1
        if self.serial >= 0:
            return
        if seconds < self.best[k]:
            self.best[k] = seconds
        self.calls += 1
        if self.calls >= TRIALS:
            self.serial = 0 if self.best[1] < MARGIN * self.best[0] else 1

    def report(self):
        """(threads chosen: "one", "all" or None while undecided, best one-thread us, best all-threads us),
        or None before any trial."""
        if not self.calls:
            return None
        return (None if self.serial < 0 else "one" if self.serial else "all",
                round(self.best[0] * 1e6, 1), round(self.best[1] * 1e6, 1))
