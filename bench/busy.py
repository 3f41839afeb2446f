"""Busy-machine benchmark: ``fastconv train``'s default job, quiet and with other processes spinning.

A user's machine is rarely idle.  OpenMP threads wait for each other by spinning, and a thread that has
lost its core to another process stalls every parallel region until it runs again; on two cores with one
other busy process, a two-thread fit can run several times slower than a one-thread one.  fastconv's
``fit`` adapts its thread count to that (:class:`fastconv.runtime.ThreadGovernor`).  This benchmark
measures, in alternating rounds, quiet and with ``--load`` processes each spinning one core:

- ``fastconv train --quiet`` as a user runs it (a fresh process, imports and evaluation included), with the
  governor (the default) and without it (``FASTCONV_ADAPTIVE_THREADS=0``);
- the same fit (seed 000's CNN, 4,000 images, 3 epochs, batch 32, float32, Adam) in-process, in fastconv
  (both ways) and in PyTorch eager on the same threads (bench/models.py's ``seed_cnn_b32``).

Issue 19's targets: busy / quiet at most 2x for ``fastconv train``, and faster than PyTorch under the same
load.  Each figure is the fastest of its rounds (all are in the JSON).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import fastconv
from fastconv.benchmarks import machine_facts

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402  (bench/models.py: the fit rounds and their PyTorch twin)

BUSY_TARGET = 2.0   # busy / quiet, fastconv train's default job
TRAIN = [sys.executable, "-c", "import sys; from fastconv.cli import main; sys.exit(main())", "train", "--quiet"]
# The child runs from the folder holding the fastconv this process imported, so that it imports the same one:
# run from a source checkout's root, ``-c`` would otherwise put the checkout's unbuilt fastconv/ first.
HOME = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def start_load(n):
    """``n`` processes that each spin one core until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(procs):
    for p in procs:
        p.kill()
        p.wait()


def cli_seconds(adaptive, threads, extra=()):
    """Wall time of one ``fastconv train --quiet`` (plus ``extra`` options) in a fresh process."""
    env = dict(os.environ, FASTCONV_ADAPTIVE_THREADS="1" if adaptive else "0", OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    done = subprocess.run(TRAIN + list(extra), env=env, capture_output=True, text=True, cwd=HOME)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"fastconv train failed: {done.stderr.strip()}")
    return seconds


def fit_us(adaptive, data, setup, epochs):
    """µs per sample of one in-process fastconv fit (the governor on or off)."""
    before = fastconv.runtime.adaptive_threads_enabled()
    fastconv.runtime.set_adaptive_threads(adaptive)
    try:
        return models.fastconv_round(setup, data, epochs)[0]
    finally:
        fastconv.runtime.set_adaptive_threads(before)


def run(rounds=3, load=1, threads=2, torch=None, sizes=None, progress=print):
    """``{"machine": facts, "rows": [...]}``: one row per contender with its quiet and busy times.
    ``sizes``: (training images, epochs) instead of the default job's (4,000, 3), for a smoke run."""
    setup = models.SETUPS["seed_cnn_b32"]
    n_train, epochs = sizes or setup["full"]
    data = models.load_data(setup["data"], setup["dtype"], n_train)
    extra = () if sizes is None else ("--train", str(n_train), "--epochs", str(epochs))
    contenders = {
        "fastconv train (default)": ("s", lambda: cli_seconds(True, threads, extra)),
        "fastconv train, FASTCONV_ADAPTIVE_THREADS=0": ("s", lambda: cli_seconds(False, threads, extra)),
        "fit, fastconv (default)": ("µs/sample", lambda: fit_us(True, data, setup, epochs)),
        "fit, fastconv, adaptive threads off": ("µs/sample", lambda: fit_us(False, data, setup, epochs)),
    }
    if torch is not None:
        contenders["fit, PyTorch eager"] = ("µs/sample", lambda: models.torch_round(torch, setup, data, epochs)[0])
    times = {name: {"quiet": [], "busy": []} for name in contenders}
    for r in range(rounds):
        for state in ("quiet", "busy"):
            procs = start_load(load if state == "busy" else 0)
            try:
                time.sleep(0.3)
                for name, (_, fn) in contenders.items():
                    times[name][state].append(fn())
                    if progress:
                        progress(f"round {r + 1} {state:<5} {name:<46} {times[name][state][-1]:10.2f}", flush=True)
            finally:
                stop_load(procs)
    rows = []
    for name, (unit, _) in contenders.items():
        quiet, busy = min(times[name]["quiet"]), min(times[name]["busy"])
        rows.append({"name": name, "unit": unit, "quiet": quiet, "busy": busy, "busy_over_quiet": busy / quiet,
                     "quiet_rounds": times[name]["quiet"], "busy_rounds": times[name]["busy"]})
    facts = machine_facts()
    facts.update(threads=threads, load_processes=load, rounds=rounds, samples=n_train, epochs=epochs,
                 torch=torch.__version__ if torch is not None else "not installed")
    return {"machine": facts, "rows": rows}


def to_markdown(result):
    rows = {r["name"]: r for r in result["rows"]}
    load = result["machine"]["load_processes"]
    lines = [f"| contender | unit | quiet | busy ({load} spinning process{'es' if load > 1 else ''}) | busy/quiet |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['unit']} | {r['quiet']:,.2f} | {r['busy']:,.2f} "
                     f"| {r['busy_over_quiet']:.2f} |")
    train = rows["fastconv train (default)"]
    met = "met" if train["busy_over_quiet"] <= BUSY_TARGET else "not met"
    lines += ["", f"fastconv train busy/quiet: {train['busy_over_quiet']:.2f} (target ≤ {BUSY_TARGET:g}: {met})."]
    if "fit, PyTorch eager" in rows:
        mine, theirs = rows["fit, fastconv (default)"], rows["fit, PyTorch eager"]
        lines.append(f"Same fit, PyTorch/fastconv: quiet {theirs['quiet'] / mine['quiet']:.2f}, "
                     f"busy {theirs['busy'] / mine['busy']:.2f}.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--load", type=int, default=1, help="spinning processes in the busy state (default 1)")
    p.add_argument("--threads", type=int, default=2, help="threads for fastconv and PyTorch (default 2)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--out", default="bench/results/busy.json", help="JSON output (default bench/results/busy.json)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.load < 1 or args.threads < 1:
        p.error("--rounds, --load and --threads must be at least 1")
    fastconv.set_num_threads(args.threads)
    torch = None if args.no_torch else models.import_frameworks(args.threads)[0]
    result = run(args.rounds, args.load, args.threads, torch)
    print(json.dumps(result["machine"], indent=1))
    print(to_markdown(result))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
