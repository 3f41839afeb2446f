# Shared by the kernel modules (include "fc_trials.pxi"): choosing between one thread and all threads
# for small work by measuring both, on the machine at hand.
#
# Whether splitting a small piece of work between threads pays depends on the machine: the threads'
# cores trade the cache lines of the data (on a 2-core Zen 5 ~8 ns a line, a 357 ns round trip), and
# that fixed cost beats the saving there, while on a 2-core Zen 1 at 2 GHz, where the same arithmetic is
# 5-9x slower, the split wins (seed conv1 float64 at batch 1: 71 -> 53 us).  So a _Trials object runs
# the first TRIALS calls of its operation in blocks of TRIAL_BLOCK calls, alternately on one thread
# and on all threads, then keeps whichever was faster (all threads only when they beat one thread's
# best by MARGIN).
# What is timed is the interval from the start of one call to the start of the next, not the call
# itself: in a training loop that is a whole step, so it also counts what the choice costs the code
# between calls (on the Zen 1 the kernels themselves ran faster on two threads while the steps ran
# slower, 447 against 404 us a sample; not measured, but likely: the idle OpenMP thread spinning on the
# second core, and data left in the other core's cache).  Blocks, not alternate calls: every operation
# of a training step switches at the same step.  Two intervals of each block are not timed: the one
# after its first call, which pays for the switch (lines left in the other core's cache, a sleeping
# OpenMP thread to wake), and the one after its last call, in which the operations that come earlier in
# a step already run in the next block's mode.
# Blocks, not halves: the first steps of a run are slow in ways that have nothing to do with the choice.
# With the first 6 steps on one thread and the next 6 on two, seed 000's CNN measured 301 against
# 273 us a step and kept one thread for 3 of its 4 convolutions, where a run on two threads then
# took 212 us a step and one on one thread 302.
# The machines are shared and the other core is sometimes busy, so after RETRY decided calls the trials
# run again.  Callers only use it where the thread count cannot change a result's bits.
from time import perf_counter

# Switch the trials off (tests): every call then uses the thread count it is given.
AUTOTUNE = True
TRIALS = 32   # a multiple of 2 * TRIAL_BLOCK
TRIAL_BLOCK = 4
MARGIN = 0.9
RETRY = 2000


cdef class _Trials:
    cdef int calls           # trial calls started
    cdef int serial          # -1 undecided, 1 one thread, 0 all threads
    cdef long since          # calls since the decision
    cdef double best[2]      # shortest interval in seconds after a one-thread / all-threads call
    cdef double last         # start of the previous trial call
    cdef int last_used       # its thread count

    def __cinit__(self):
        self.reset()

    cdef void reset(self):
        self.calls = 0
        self.serial = -1
        self.since = 0
        self.best[0] = self.best[1] = 1e300
        self.last_used = 0

    cdef int threads(self, int nthreads):
        """The thread count for a call with ``nthreads`` available (a trial's is timed from here)."""
        cdef double now
        cdef int k
        if nthreads <= 1 or not AUTOTUNE:
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
