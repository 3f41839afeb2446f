"""fastconv.runtime: the thread count and its bound, the OpenMP facts, the autotune switch and its report."""
import ast
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import _conv, _runtime, ops, reference, runtime

PACKAGE = pathlib.Path(fastconv.__file__).parent
CORES = os.cpu_count() or 1


@pytest.fixture
def threads():
    """Restores the thread count and the autotune switches after the test."""
    old = fastconv.get_num_threads()
    switch = _runtime.autotune_enabled()
    yield
    fastconv.set_num_threads(old)
    _runtime.set_autotune(switch)


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter importing this checkout's fastconv; (returncode, output)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    environment.update(PYTHONPATH=str(PACKAGE.parent), **env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env=environment, cwd=str(PACKAGE.parent))
    return done.returncode, done.stdout + done.stderr


# ------------------------------------------------------------------------------------------- threads

def test_thread_functions_are_one_setting_everywhere(threads):
    for setter in (runtime.set_num_threads, ops.set_num_threads, fastconv.set_num_threads):
        for n in (2, 1):
            setter(n)
            assert runtime.get_num_threads() == ops.get_num_threads() == fastconv.get_num_threads() == n
    assert ops.openmp_enabled() is runtime.openmp_enabled() is bool(_runtime.have_openmp())
    assert ops.max_threads() == runtime.max_threads() == _runtime.max_threads()


def test_ops_reads_the_thread_count_on_every_call(threads):
    """A batch-1 conv runs thread trials only on more than one thread: the count set through runtime
    reaches the next ops call."""
    runtime.set_autotune(True)
    x = np.ones((1, 5, 9, 7))      # a geometry no other test uses
    w = np.ones((3, 5, 2, 3))
    key = (5, 9, 7, 3, 2, 3, 1, 1, 0, 0)
    runtime.set_num_threads(1)
    ops.conv2d_forward(x, w)
    assert not [k for k in _conv.batch1_choices() if k[:10] == key]
    runtime.set_num_threads(2)
    ops.conv2d_forward(x, w)
    assert [k for k in _conv.batch1_choices() if k[:10] == key]


def test_thread_limit_is_four_times_the_cores():
    assert runtime.thread_limit() == 4 * CORES or "OMP_THREAD_LIMIT" in os.environ
    assert 1 <= runtime.get_num_threads() <= runtime.thread_limit()


def test_omp_thread_limit_lowers_the_bound_and_caps_the_default():
    code = ("import fastconv\n"
            "from fastconv import ops, runtime\n"
            "print(runtime.thread_limit(), fastconv.get_num_threads())\n"
            "try:\n"
            "    fastconv.set_num_threads(4)\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    rc, out = run_python(code, OMP_THREAD_LIMIT="3", OMP_NUM_THREADS="64")
    assert rc == 0, out
    first, message = out.splitlines()[:2]
    assert first == "3 3"
    assert "at most 3" in message and "OMP_THREAD_LIMIT" in message


def test_default_thread_count_is_capped_at_the_limit():
    rc, out = run_python("import fastconv\nprint(fastconv.get_num_threads())", OMP_NUM_THREADS="100000")
    assert rc == 0, out
    assert int(out.split()[0]) == min(100000, 4 * CORES)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (1.5, TypeError), ("2", TypeError),
                                        (True, TypeError), (None, TypeError)])
def test_bad_thread_counts(threads, bad, error):
    with pytest.raises(error, match="num_threads must be an integer >= 1"):
        runtime.set_num_threads(bad)


def test_numpy_integers_are_accepted(threads):
    runtime.set_num_threads(np.int64(2))
    assert type(runtime.get_num_threads()) is int and runtime.get_num_threads() == 2


# ------------------------------------------------------------------------------------------ autotune

def test_autotune_switch_is_the_compiled_kernels_one_switch(threads):
    runtime.set_autotune(False)
    assert runtime.autotune_enabled() is False and _runtime.autotune_enabled() is False
    runtime.set_autotune(True)
    assert runtime.autotune_enabled() is True and _runtime.autotune_enabled() is True


@pytest.mark.parametrize("bad", [1, 0, "yes", None])
def test_autotune_switch_takes_a_bool(threads, bad):
    with pytest.raises(TypeError, match="enabled must be True or False"):
        runtime.set_autotune(bad)


def test_autotune_off_runs_no_trials(threads):
    runtime.set_autotune(False)
    runtime.set_num_threads(2)
    x, w = np.ones((1, 3, 11, 13)), np.ones((2, 3, 4, 1))   # a geometry no other test uses
    ops.conv2d_forward(x, w)
    shape = {"channels": 3, "height": 11, "width": 13, "filters": 2, "kernel_size": (4, 1), "stride": (1, 1),
             "padding": (0, 0)}
    assert not [c for c in runtime.autotune_report() if c["kernel"] == "conv2d" and c["shape"] == shape]


def test_autotune_report_lists_what_the_trials_chose(threads):
    runtime.set_autotune(True)
    runtime.set_num_threads(2)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 15, 10)).astype(np.float32)   # a geometry no other test uses
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    p = np.zeros(1237)
    for _ in range(_runtime.TRIALS + 2):
        ops.conv2d_forward(x, w, stride=(1, 2), padding=1)
        ops.adam_update(p, np.ones_like(p), np.zeros_like(p), np.zeros_like(p), step=1)
    report = runtime.autotune_report()
    conv = [c for c in report if c["kernel"] == "conv2d" and c["shape"] == {
        "channels": 2, "height": 15, "width": 10, "filters": 3, "kernel_size": (3, 3), "stride": (1, 2),
        "padding": (1, 1)}]
    assert [(c["operation"], c["dtype"]) for c in conv] == [("forward", "float32")]
    adam = [c for c in report if c["kernel"] == "adam" and c["shape"] == {"size": 1237}]
    assert [(c["operation"], c["dtype"]) for c in adam] == [("update", "float64")]
    for choice in conv + adam:
        assert choice["threads"] in ("one", "all")
        assert 0 < choice["one_thread_us"] < 1e6 and 0 < choice["all_threads_us"] < 1e6
        assert (choice["threads"] == "all") == (choice["all_threads_us"] < _runtime.MARGIN * choice["one_thread_us"])


# ------------------------------------------------------------------------------------------- layering

def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name, []


def test_ops_does_not_import_its_test_oracle():
    """issue 15: ops took _adam_coefficients from reference, so the fast path depended on its oracle."""
    for level, module, names in _imports(PACKAGE / "ops.py"):
        assert "reference" not in module and "reference" not in names, (module, names)


def test_runtime_imports_only_the_compiled_modules():
    for level, module, names in _imports(PACKAGE / "runtime.py"):
        if level:
            assert module == "" and all(n.startswith("_") for n in names), (module, names)


@pytest.mark.parametrize("eps_hat", [False, True])
def test_adam_coefficients_are_the_references_bit_for_bit(eps_hat):
    rng = np.random.default_rng(3)
    for step in [1, 2, 3, 10, 1000, 10**6]:
        for _ in range(20):
            lr, wd = float(rng.uniform(0, 0.1)), float(rng.choice([0.0, rng.uniform(0, 0.1)]))
            beta1, beta2 = float(rng.uniform(0, 0.999)), float(rng.uniform(0.5, 0.99999))
            ours = ops._adam_coefficients(step, lr, beta1, beta2, wd, eps_hat)
            theirs = reference._adam_coefficients(step, lr, beta1, beta2, wd, eps_hat)
            assert np.array(ours).tobytes() == np.array(theirs).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_split_below_parallel_min_is_bit_identical(threads, dtype):
    """An Adam step split between two threads below PARALLEL_MIN (trials off) keeps the reference's bits."""
    runtime.set_autotune(False)
    runtime.set_num_threads(2)
    rng = np.random.default_rng(11)
    p = rng.standard_normal(1001).astype(dtype)
    state = [np.zeros_like(p), np.zeros_like(p)]
    p_ref, state_ref = p.copy(), [np.zeros_like(p), np.zeros_like(p)]
    for step in range(1, 11):
        g = rng.standard_normal(1001).astype(dtype)
        ops.adam_update(p, g, *state, step=step, lr=1e-2)
        reference.adam_update(p_ref, g, *state_ref, step=step, lr=1e-2)
        assert p.tobytes() == p_ref.tobytes(), step


# ------------------------------------------------------------------------------------ adaptive threads

class _Clocks:
    """Fake wall and CPU clocks for a ThreadGovernor: each step takes ``step_s`` at ``load`` cores busy."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def run(self, seconds, cores):
        self.wall += seconds
        self.cpu += seconds * cores


def _governor(clocks, idle=None, **kw):
    """A governor on 2 threads reading ``clocks``; ``idle``: a function of nothing giving idle cores."""
    state = {"idle": 0, "total": 0}

    def cpu_times():
        if idle is None:
            return None
        state["total"] += 100
        state["idle"] += 50 * idle()    # 2 cores: idle() of them idle over the last 100 jiffies
        return state["idle"], state["total"]

    return runtime.ThreadGovernor(2, window_s=0.05, min_steps=4, clock=lambda: clocks.wall,
                                  cpu_clock=lambda: clocks.cpu, cpu_times=cpu_times, cores=2, current=None, **kw)


def _train(gov, clocks, steps, step_s, cores_of):
    """Run ``steps`` steps of 8 samples: at n threads a step takes step_s[n] with cores_of[n] cores busy."""
    for _ in range(steps):
        n = gov.threads
        clocks.run(step_s[n], cores_of[n])
        gov.tick(8)


def test_governor_changes_nothing_on_a_quiet_machine():
    clocks = _Clocks()
    gov = _governor(clocks)
    _train(gov, clocks, 400, {1: 0.02, 2: 0.012}, {1: 1.0, 2: 1.97})
    assert gov.threads == 2
    assert {r["action"] for r in gov.report} <= {"settle", "keep"}
    assert len(gov.report) > 40


def test_governor_halves_the_threads_when_a_core_is_taken_and_keeps_them():
    clocks = _Clocks()
    gov = _governor(clocks, idle=lambda: 0.0)
    # busy: two threads get 1.3 cores and stall (0.05 s a step); one thread runs at its quiet speed
    _train(gov, clocks, 200, {1: 0.02, 2: 0.05}, {1: 1.0, 2: 1.3})
    actions = [r["action"] for r in gov.report]
    assert gov.threads == gov.home == 1
    assert actions[:4] == ["settle", "probe", "settle", "take"]
    assert "probe" not in actions[4:]     # no idle core: it never tries two threads again


def test_governor_goes_back_and_waits_longer_when_a_probe_loses():
    clocks = _Clocks()
    gov = _governor(clocks)
    # the process looks oversubscribed (1.2 cores of 2) but one thread is slower: probes lose
    _train(gov, clocks, 2000, {1: 0.03, 2: 0.012}, {1: 1.0, 2: 1.2})
    assert gov.threads == 2
    rows = gov.report
    probes = [i for i, r in enumerate(rows) if r["action"] == "probe"]
    gaps = np.diff(probes)
    # the gap doubles up to max_gap windows (a probe costs a settle window and a measured one: 3 more)
    assert list(gaps[:6]) == [1 + 2 * 2 ** k + 2 for k in range(6)] and max(gaps) == 64 + 3
    assert all(rows[i + 2]["action"] == "back" for i in probes)


def test_governor_raises_the_threads_again_when_a_core_frees_up():
    clocks = _Clocks()
    idle = {"cores": 0.0}
    gov = _governor(clocks, idle=lambda: idle["cores"])
    busy = ({1: 0.02, 2: 0.05}, {1: 1.0, 2: 1.3})
    _train(gov, clocks, 100, *busy)
    assert gov.threads == 1
    idle["cores"] = 1.0                   # the other process ends
    _train(gov, clocks, 200, {1: 0.02, 2: 0.012}, {1: 1.0, 2: 1.97})
    assert gov.threads == gov.home == 2
    assert gov.report[-1]["action"] == "keep"


def test_governor_leaves_out_paused_time():
    clocks = _Clocks()
    gov = _governor(clocks)
    for k in range(4):
        clocks.run(0.02, 2)
        gov.pause()
        clocks.run(1.0, 0.5)     # a long non-step interval (compiling, validation)
        gov.resume()
        gov.tick(8)
    assert gov.report[-1]["seconds"] == pytest.approx(0.08)
    assert gov.report[-1]["cpu_per_wall"] == pytest.approx(2.0)


def test_adaptive_threads_switch(threads):
    before = runtime.adaptive_threads_enabled()
    try:
        runtime.set_adaptive_threads(False)
        assert not runtime.adaptive_threads_enabled()
        with runtime.adaptive_threads() as gov:
            assert gov is None
        runtime.set_adaptive_threads(True)
        fastconv.set_num_threads(1)
        with runtime.adaptive_threads() as gov:
            assert gov is None          # nothing to adapt on one thread
    finally:
        runtime.set_adaptive_threads(before)
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match="enabled must be True or False"):
            runtime.set_adaptive_threads(bad)


def test_adaptive_threads_environment_variable():
    code = "from fastconv import runtime; print(runtime.adaptive_threads_enabled())"
    assert run_python(code, FASTCONV_ADAPTIVE_THREADS="0")[1].strip() == "False"
    assert run_python(code)[1].strip() == "True"


@pytest.mark.skipif(not runtime.openmp_enabled(), reason="built without OpenMP")
def test_fit_reports_its_windows_and_restores_the_thread_count(threads):
    fastconv.set_num_threads(2)
    model = fastconv.Sequential([fastconv.layers.Dense(16, activation="relu"), fastconv.layers.Dense(3)], seed=0)
    model.compile(fastconv.optimizers.SGD(0.01), "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((4000, 8)), rng.standard_normal((4000, 3)), batch_size=4, epochs=16, verbose=0)
    report = runtime.adaptive_threads_report()
    assert report and report[0]["action"] == "settle"
    assert {"threads", "seconds", "samples", "us_per_sample", "cpu_per_wall", "idle_cores", "action"} <= set(report[0])
    assert runtime.get_num_threads() == 2


def test_governor_stops_when_the_run_sets_its_own_thread_count():
    clocks, count = _Clocks(), {"n": 2}
    gov = runtime.ThreadGovernor(2, clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu,
                                 cpu_times=lambda: None, cores=2, current=lambda: count["n"])
    for step in range(400):
        if step == 200:
            count["n"] = 3          # a callback's set_num_threads(3)
        clocks.run({1: 0.02, 2: 0.05, 3: 0.05}[count["n"]], 1.3)
        if gov.tick(8):
            count["n"] = gov.threads   # what the training loop does
    assert gov.off and count["n"] == 3
    assert gov.home == 1          # it had moved to one thread before
