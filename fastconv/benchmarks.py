"""Kernel benchmarks: fastconv vs its NumPy reference, a naive NumPy update, and PyTorch when installed.

Run ``python bench/kernels.py`` (or ``fastconv-bench``).  Prints machine facts, a markdown table, and
writes ``kernels.json`` and ``kernels.md`` into ``--out``.  Ratios are measured in one run: the machines
this runs on are shared, so compare ratios, not absolute times across runs.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from . import ops, reference

# name, x shape, w shape, stride, padding, first layer (no dx, as in training)
CONV_SHAPES = [
    ("seed conv1 b1", (1, 1, 28, 28), (16, 1, 8, 8), 1, 0, True),
    ("seed conv2 b1", (1, 16, 21, 21), (8, 16, 4, 4), 2, 0, False),
    ("seed conv1 b64", (64, 1, 28, 28), (16, 1, 8, 8), 1, 0, True),
    ("seed conv2 b64", (64, 16, 21, 21), (8, 16, 4, 4), 2, 0, False),
    ("3x3 64->64 b32", (32, 64, 32, 32), (64, 64, 3, 3), 1, 1, False),
    ("5x5 s2 stem 3->32 b32", (32, 3, 32, 32), (32, 3, 5, 5), 2, 2, False),
    # Keras's MNIST convnet, LeNet-5, and a CIFAR-size first layer (the shifted forward of few terms)
    ("mnist conv1 1->32 b128", (128, 1, 28, 28), (32, 1, 3, 3), 1, 0, True),
    ("mnist conv2 32->64 b128", (128, 32, 13, 13), (64, 32, 3, 3), 1, 0, False),
    ("lenet conv1 1->6 b1", (1, 1, 28, 28), (6, 1, 5, 5), 1, 2, True),
    ("lenet conv2 6->16 b1", (1, 6, 14, 14), (16, 6, 5, 5), 1, 0, False),
    ("3x3 p1 3->32 b64", (64, 3, 32, 32), (32, 3, 3, 3), 1, 1, True),
    # the im2col path: dilation, and TensorFlow's "same" at stride 2 (the extra row/column at the end)
    ("3x3 d2 32->32 b8", (8, 32, 32, 32), (32, 32, 3, 3), 1, 2, False, 2),
    ("3x3 s2 same 32->64 b8", (8, 32, 32, 32), (64, 32, 3, 3), 2, (0, 1, 0, 1), False),
]
# the backward of a first layer alone (dW and db, no dx): name, x shape, w shape, stride, padding
CONV_DW_SHAPES = [
    ("mnist conv1 1->32 b128", (128, 1, 28, 28), (32, 1, 3, 3), 1, 0),
]


def timeit(fn, min_time=0.3, max_reps=10_000):
    """Median seconds per call over repeats of an adaptive batch of calls."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    reps = int(min(max_reps, max(1, (min_time / 5) / once)))
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        samples.append((time.perf_counter() - t0) / reps)
        if once > min_time:
            break
    return float(np.median(samples))


def timeit_interleaved(fns, min_time=0.3, rounds=7):
    """Median seconds per call of each of ``fns``, timed in alternating rounds so that both sides of a
    ratio see the same machine (memory-bound kernels moved by 30% between back-to-back timeit runs here)."""
    reps = []
    for fn in fns:
        fn()
        t0 = time.perf_counter()
        fn()
        reps.append(int(min(10_000, max(1, (min_time / rounds) / max(time.perf_counter() - t0, 1e-7)))))
    samples = [[] for _ in fns]
    for _ in range(rounds):
        for fn, r, out in zip(fns, reps, samples):
            t0 = time.perf_counter()
            for _ in range(r):
                fn()
            out.append((time.perf_counter() - t0) / r)
    return [float(np.median(s)) for s in samples]


def machine_facts():
    facts = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
             "fastconv_from": os.path.dirname(os.path.abspath(ops.__file__)),  # which copy is measured
             "fastconv_threads": ops.get_num_threads(), "openmp": ops.openmp_enabled(),
             "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")}
    try:
        with open("/proc/cpuinfo") as f:
            facts["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        facts["cpu"] = platform.processor() or "unknown"
    facts["cores"] = os.cpu_count()
    try:
        from threadpoolctl import threadpool_info

        facts["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                         for d in threadpool_info()]
    except ImportError:
        facts["blas"] = "threadpoolctl not installed"
    return facts


def _torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def bench_conv(torch, dtype, quick):
    rows = []
    for name, xs, ws, s, p, first, *dil in CONV_SHAPES:
        d = dil[0] if dil else 1
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs).astype(dtype)
        w = (rng.standard_normal(ws) * 0.1).astype(dtype)
        b = rng.standard_normal(ws[0]).astype(dtype)
        y = ops.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
        dy = rng.standard_normal(y.shape).astype(dtype)
        flops = 2.0 * y.size * ws[1] * ws[2] * ws[3] * (2 if first else 3)

        def fast():
            ops.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
            ops.conv2d_backward(dy, x, w, stride=s, padding=p, dilation=d, need_dx=not first)

        def ref():
            reference.conv2d_forward(x, w, b, stride=s, padding=p, dilation=d)
            reference.conv2d_backward(dy, x, w, stride=s, padding=p, dilation=d, need_dx=not first)

        tfn = None
        if torch is not None:
            tx = torch.tensor(x, requires_grad=not first)
            tw = torch.tensor(w, requires_grad=True)
            tb = torch.tensor(b, requires_grad=True)
            tdy = torch.tensor(dy)
            # PyTorch pads symmetrically only: an asymmetric padding is an F.pad before the conv
            tpad = (p[2], p[3], p[0], p[1]) if isinstance(p, tuple) and len(p) == 4 else None

            def tfn():
                tin = torch.nn.functional.pad(tx, tpad) if tpad else tx
                torch.nn.functional.conv2d(tin, tw, tb, stride=s, padding=0 if tpad else p,
                                           dilation=d).backward(tdy)

        rows.append(_conv_row("conv2d fwd+bwd", name, dtype, flops, fast, ref, quick and y.size > 1e6, tfn))
    for name, xs, ws, s, p in CONV_DW_SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs).astype(dtype)
        w = (rng.standard_normal(ws) * 0.1).astype(dtype)
        dy = rng.standard_normal(ops.conv2d_output_shape(xs, ws, s, p)).astype(dtype)
        flops = 2.0 * dy.size * ws[1] * ws[2] * ws[3]

        def fast():
            ops.conv2d_backward(dy, x, w, stride=s, padding=p, need_dx=False)

        def ref():
            reference.conv2d_backward(dy, x, w, stride=s, padding=p, need_dx=False)

        tfn = None
        if torch is not None:
            tx, tdy = torch.tensor(x), torch.tensor(dy)

            def tfn():   # PyTorch's weight gradient alone, and the bias's
                torch.nn.grad.conv2d_weight(tx, ws, tdy, stride=s, padding=p)
                tdy.sum((0, 2, 3))

        rows.append(_conv_row("conv2d dW+db (no dx)", name, dtype, flops, fast, ref, quick, tfn))
    return rows


def _conv_row(kernel, shape, dtype, flops, fast, ref, skip_ref, torch_fn):
    """A convolution row: ``fast`` timed alone, ``ref`` (unless ``skip_ref``), and, when ``torch_fn`` is
    given, ``fast`` and ``torch_fn`` again in alternating rounds, whose ratio the row keeps; printed."""
    t_fast = timeit(fast)
    t_ref = timeit(ref, min_time=0.05, max_reps=3) if not skip_ref else float("nan")
    row = {"kernel": kernel, "shape": shape, "dtype": np.dtype(dtype).name, "fast_us": t_fast * 1e6,
           "gflops": flops / t_fast / 1e9, "ref_us": t_ref * 1e6, "speedup_vs_ref": t_ref / t_fast}
    if torch_fn is not None:
        # the ratio from alternating rounds: the machine's speed drifts between back-to-back timings
        t_fast, t_torch = timeit_interleaved([fast, torch_fn])
        row.update(fast_us=t_fast * 1e6, gflops=flops / t_fast / 1e9, speedup_vs_ref=t_ref / t_fast,
                   torch_us=t_torch * 1e6, torch_over_fast=t_torch / t_fast)
    _print_row(row)
    return row


def bench_elementwise(torch, dtype):
    rows = []
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 21, 21)).astype(dtype)
    cases = [
        ("relu fwd+bwd", "64x16x21x21", lambda: ops.relu_backward(x, ops.relu_forward(x)[1]),
         lambda: reference.relu_backward(x, reference.relu_forward(x)[1]),
         (lambda t: (lambda: torch.relu(t).backward(t.detach()))) if torch else None),
    ]
    xp = rng.standard_normal((8, 16, 32, 32)).astype(dtype)
    yp, idx = ops.maxpool2d_forward(xp)
    cases.append(("maxpool2d fwd+bwd", "8x16x32x32 k2",
                  lambda: ops.maxpool2d_backward(yp, ops.maxpool2d_forward(xp)[1], xp.shape),
                  lambda: reference.maxpool2d_backward(yp, reference.maxpool2d_forward(xp)[1], xp.shape),
                  (lambda t: (lambda: torch.nn.functional.max_pool2d(t, 2).backward(torch.tensor(yp))))
                  if torch else None))
    xk = rng.standard_normal((128, 32, 26, 26)).astype(dtype)   # Keras's MNIST convnet, after its first conv

    def pool_torch(t):
        def run():
            with torch.no_grad():
                torch.nn.functional.max_pool2d(t, 2, return_indices=True)
        return run

    cases.append(("maxpool2d fwd", "128x32x26x26 k2", lambda: ops.maxpool2d_forward(xk),
                  lambda: reference.maxpool2d_forward(xk), pool_torch if torch else None))
    z = rng.standard_normal((64, 10)).astype(dtype)
    lab = rng.integers(0, 10, 64)
    cases.append(("softmax CE", "64x10",
                  lambda: ops.softmax_cross_entropy(z, lab), lambda: reference.softmax_cross_entropy(z, lab),
                  (lambda t: (lambda: torch.nn.functional.cross_entropy(t, torch.tensor(lab)).backward()))
                  if torch else None))
    xd = rng.standard_normal((1, 648)).astype(dtype)   # seed 000's last layer at batch 1
    wd = rng.standard_normal((10, 648)).astype(dtype)
    bd = rng.standard_normal(10).astype(dtype)
    dyd = rng.standard_normal((1, 10)).astype(dtype)

    def dense_fast():
        ops.dense_forward(xd, wd, bd)
        ops.dense_backward(dyd, xd, wd)

    def dense_ref():
        reference.dense_forward(xd, wd, bd)
        reference.dense_backward(dyd, xd, wd)

    def dense_torch(t):
        tw, tb, tdy = (torch.tensor(a, requires_grad=True) for a in (wd, bd, dyd))
        return lambda: torch.nn.functional.linear(t, tw, tb).backward(tdy)

    cases.append(("dense fwd+bwd", "1x648 -> 10", dense_fast, dense_ref, dense_torch if torch else None))
    for name, shape, fast, ref, tmaker in cases:
        t_fast = timeit(fast)
        t_ref = timeit(ref, min_time=0.05, max_reps=5)
        row = {"kernel": name, "shape": shape, "dtype": np.dtype(dtype).name, "fast_us": t_fast * 1e6,
               "ref_us": t_ref * 1e6, "speedup_vs_ref": t_ref / t_fast}
        if tmaker is not None:
            src = {"relu fwd+bwd": x, "maxpool2d fwd+bwd": xp, "maxpool2d fwd": xk, "softmax CE": z,
                   "dense fwd+bwd": xd}[name]
            t_fast, t_torch = timeit_interleaved([fast, tmaker(torch.tensor(src, requires_grad=True))])
            row.update(fast_us=t_fast * 1e6, speedup_vs_ref=t_ref / t_fast, torch_us=t_torch * 1e6,
                       torch_over_fast=t_torch / t_fast)
        rows.append(row)
        _print_row(row)
    return rows


ACTIVATION_SHAPES = [(1, 32, 26, 26), (32, 32, 26, 26)]


def _torch_activation(torch, kind):
    """PyTorch's forward ``f(t)`` and backward ``b(g, t, y)`` (the ATen backward op, as autograd runs it;
    softsign has none and goes through autograd) for ``kind``, with the defaults of fastconv.ops."""
    F, aten = torch.nn.functional, torch.ops.aten
    forward = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "elu": F.elu, "selu": F.selu, "gelu": F.gelu,
               "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "leaky_relu": F.leaky_relu,
               "silu": F.silu, "softplus": F.softplus, "softsign": F.softsign, "relu6": F.relu6,
               "hard_sigmoid": F.hardsigmoid}[kind]

    def softsign_backward(g, t, y):
        tt = t.detach().requires_grad_(True)
        return torch.autograd.grad(F.softsign(tt), tt, g)[0]

    backward = {"sigmoid": lambda g, t, y: aten.sigmoid_backward(g, y),
                "tanh": lambda g, t, y: aten.tanh_backward(g, y),
                "elu": lambda g, t, y: aten.elu_backward(g, 1.0, 1.0, 1.0, False, t),
                "selu": lambda g, t, y: aten.elu_backward(g, ops.SELU_ALPHA, ops.SELU_SCALE, 1.0, False, t),
                "gelu": lambda g, t, y: aten.gelu_backward(g, t),
                "gelu_tanh": lambda g, t, y: aten.gelu_backward(g, t, approximate="tanh"),
                "leaky_relu": lambda g, t, y: aten.leaky_relu_backward(g, t, 0.01, False),
                "silu": lambda g, t, y: aten.silu_backward(g, t),
                "softplus": lambda g, t, y: aten.softplus_backward(g, t, 1.0, 20.0),
                "softsign": softsign_backward,
                "relu6": lambda g, t, y: aten.hardtanh_backward(g, t, 0.0, 6.0),
                "hard_sigmoid": lambda g, t, y: aten.hardsigmoid_backward(g, t)}[kind]
    return forward, backward


def bench_activations(torch, dtype, shapes=None, kinds=None):
    """Each compiled activation (ops.activation_forward / activation_backward, allocating their outputs)
    against its NumPy twin and PyTorch's forward and ATen backward, at batch 1 and batch 32."""
    rows = []
    rng = np.random.default_rng(0)
    for shape in shapes or ACTIVATION_SHAPES:
        x = (rng.standard_normal(shape) * 2).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        label = "x".join(map(str, shape))
        for kind in kinds or ops.ACTIVATION_KINDS:
            y = ops.activation_forward(x, kind)
            cases = [(f"{kind} fwd", lambda: ops.activation_forward(x, kind),
                      lambda: reference.activation_forward(x, kind)),
                     (f"{kind} bwd", lambda: ops.activation_backward(dy, x, y, kind),
                      lambda: reference.activation_backward(dy, x, y, kind))]
            torch_calls = [None, None]
            if torch is not None:
                tf, tb = _torch_activation(torch, kind)
                tx, tdy = torch.tensor(x), torch.tensor(dy)
                ty = tf(tx)
                torch_calls = [lambda: tf(tx), lambda: tb(tdy, tx, ty)]
            for (name, fast, ref), tcall in zip(cases, torch_calls):
                t_ref = timeit(ref, min_time=0.05, max_reps=5)
                if tcall is None:
                    t_fast, t_torch = timeit(fast), None
                else:
                    t_fast, t_torch = timeit_interleaved([fast, tcall])
                row = {"kernel": name, "shape": label, "dtype": np.dtype(dtype).name, "fast_us": t_fast * 1e6,
                       "ref_us": t_ref * 1e6, "speedup_vs_ref": t_ref / t_fast}
                if t_torch is not None:
                    row.update(torch_us=t_torch * 1e6, torch_over_fast=t_torch / t_fast)
                rows.append(row)
                _print_row(row)
    return rows


def bench_norm_pool(torch, dtype, batches=(1, 32)):
    """Batch norm (training forward + backward, running statistics updated) and 2x2 average pooling
    (forward + backward) on (N, 32, 26, 26), through the bound calls a training step runs."""
    rows = []
    rng = np.random.default_rng(0)
    for n in batches:
        shape = (n, 32, 26, 26)
        x = rng.standard_normal(shape).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        gamma, beta = rng.standard_normal(32).astype(dtype), rng.standard_normal(32).astype(dtype)
        rm, rv = np.zeros(32, dtype), np.ones(32, dtype)
        y, dx = np.empty_like(x), np.empty_like(x)
        mean, invstd = np.empty(32), np.empty(32)
        dgamma, dbeta = np.empty(32, dtype), np.empty(32, dtype)
        bn_calls = [ops.bind_batchnorm_forward(x, gamma, beta, rm, rv, y, mean, invstd, np.empty(n * 32),
                                               training=True, momentum=0.1, eps=1e-5, convention="torch"),
                    ops.bind_batchnorm_backward(dy, x, gamma, mean, invstd, dx, dgamma, dbeta, np.empty(2 * n * 32))]
        yp = np.empty((n, 32, 13, 13), dtype)
        dyp = rng.standard_normal(yp.shape).astype(dtype)
        pool_calls = [ops.bind_avgpool2d_forward(x, yp, size=2, stride=2, padding=0),
                      ops.bind_avgpool2d_backward(dyp, dx, size=2, stride=2, padding=0)]

        def run(calls):
            def go():
                for kernel, args in calls:
                    kernel(*args)
            return go

        def bn_ref():
            _, m, s = reference.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy())
            reference.batchnorm_backward(dy, x, gamma, m, s)

        def pool_ref():
            reference.avgpool2d_forward(x, size=2)
            reference.avgpool2d_backward(dyp, x.shape, size=2)

        def bn_torch():
            t, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
            trm, trv, tdy = torch.tensor(rm), torch.tensor(rv), torch.tensor(dy)
            return lambda: torch.nn.functional.batch_norm(t, trm, trv, tg, tb, training=True).backward(tdy)

        def pool_torch():
            t, tdy = torch.tensor(x, requires_grad=True), torch.tensor(dyp)
            return lambda: torch.nn.functional.avg_pool2d(t, 2).backward(tdy)

        label = "x".join(map(str, shape))
        for name, fast, ref, tmaker in (("batchnorm2d fwd+bwd", run(bn_calls), bn_ref, bn_torch),
                                        ("avgpool2d fwd+bwd", run(pool_calls), pool_ref, pool_torch)):
            t_fast = timeit(fast)
            t_ref = timeit(ref, min_time=0.05, max_reps=5)
            row = {"kernel": name, "shape": label + (" k2" if "pool" in name else ""), "dtype": np.dtype(dtype).name,
                   "fast_us": t_fast * 1e6, "ref_us": t_ref * 1e6, "speedup_vs_ref": t_ref / t_fast}
            if torch is not None:
                t_fast, t_torch = timeit_interleaved([fast, tmaker()])
                row.update(fast_us=t_fast * 1e6, speedup_vs_ref=t_ref / t_fast, torch_us=t_torch * 1e6,
                           torch_over_fast=t_torch / t_fast)
            rows.append(row)
            _print_row(row)
    return rows


def naive_adam(p, g, m, v, step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """The textbook NumPy update (temporaries per line), as seeds write it."""
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g ** 2
    mhat = m / (1 - b1 ** step)
    vhat = v / (1 - b2 ** step)
    p -= lr * mhat / (np.sqrt(vhat) + eps)


_NAIVE_CHILD = """
import sys
import numpy as np
from fastconv.benchmarks import naive_adam, timeit
n, dt = int(sys.argv[1]), np.dtype(sys.argv[2])
rng = np.random.default_rng(0)
p, g = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
m, v = np.zeros_like(p), np.zeros_like(p)
print(timeit(lambda: naive_adam(p, g, m, v, 10)))
"""


def naive_adam_allocator_warm(n, dtype):
    """Seconds per naive_adam call with glibc's malloc told to keep freed memory, or None where that
    cannot be set (not glibc; temporaries over glibc's 32 MB mmap threshold limit).

    By default glibc serves each temporary above 128 KB by mmap, or trims the heap after it, so that
    every line of the naive update faults its pages in again, which can take the naive step several times
    longer; which of the two a process sees depends on its heap's history (docs/performance.md has the
    figures).  Timed in a child process with GLIBC_TUNABLES set."""
    if platform.libc_ver()[0] != "glibc" or n * np.dtype(dtype).itemsize > 16 << 20:
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824",
               PYTHONPATH=os.pathsep.join(
                   [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    # cwd=root: the child imports this fastconv, not a source tree in the caller's working directory
    out = subprocess.run([sys.executable, "-c", _NAIVE_CHILD, str(n), np.dtype(dtype).name], env=env, cwd=root,
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"naive update with its memory kept: the child process failed ({out.stderr.strip()[-300:]})",
              file=sys.stderr)
        return None
    return float(out.stdout.strip().splitlines()[-1])


def bench_adam(torch, dtype, sizes):
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        p = rng.standard_normal(n).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        m, v = np.zeros_like(p), np.zeros_like(p)
        t_fast = timeit(lambda: ops.adam_update(p, g, m, v, step=10))
        t_naive = timeit(lambda: naive_adam(p, g, m, v, 10))
        row = {"kernel": "adam_update", "shape": f"{n:.0e} params", "dtype": np.dtype(dtype).name,
               "fast_us": t_fast * 1e6, "gbytes_per_s": 7 * n * p.itemsize / t_fast / 1e9,
               "naive_numpy_us": t_naive * 1e6, "speedup_vs_naive": t_naive / t_fast}
        if torch is not None:
            tp = torch.tensor(p, requires_grad=True)
            tp.grad = torch.tensor(g)
            try:
                opt = torch.optim.Adam([tp], lr=1e-3, fused=True)
                opt.step()
                label = "fused"
            except (RuntimeError, TypeError):
                opt = torch.optim.Adam([tp], lr=1e-3, foreach=True)
                label = "foreach"
            t_fast, t_naive, t_torch = timeit_interleaved([lambda: ops.adam_update(p, g, m, v, step=10),
                                                           lambda: naive_adam(p, g, m, v, 10), opt.step])
            row.update(fast_us=t_fast * 1e6, gbytes_per_s=7 * n * p.itemsize / t_fast / 1e9,
                       naive_numpy_us=t_naive * 1e6, speedup_vs_naive=t_naive / t_fast)
            row.update(torch_us=t_torch * 1e6, torch_over_fast=t_torch / t_fast, torch_variant=label)
        t_warm = naive_adam_allocator_warm(n, dtype)
        if t_warm is not None:
            row.update(naive_warm_us=t_warm * 1e6, speedup_vs_naive_warm=t_warm / t_fast)
        rows.append(row)
        _print_row(row)
    return rows


# ---- optimizers (Keras forms) ----

def _torch_optimizer(torch, cls, tp, **kw):
    """A torch optimizer on ``tp``, fused or foreach where the build offers it, and the variant's name."""
    for variant in ("fused", "foreach"):
        try:
            opt = cls([tp], **kw, **{variant: True})
            opt.step()
            return opt, variant
        except (RuntimeError, TypeError, ValueError):
            continue
    opt = cls([tp], **kw)
    return opt, "for-loop"


def bench_optimizers(torch, dtype, sizes):
    """RMSprop, Adagrad and Adam with clipping by global norm: the bound fused step (the one fit runs)
    against the NumPy twin and torch.optim (``clip_grad_norm_`` then the step for the clipped row)."""
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        p = rng.standard_normal(n).astype(dtype)
        g = (rng.standard_normal(n) * 1e-3).astype(dtype)
        cases = []
        s1, s2 = np.zeros_like(p), np.zeros_like(p)
        fast = ops.bind_rmsprop_update(p, g, s1, s2, momentum=0.9)
        cases.append(("rmsprop_update", lambda f=fast: f(1e-3),
                      lambda: reference.rmsprop_update(p, g, s1, s2, lr=1e-3, momentum=0.9), 6,
                      ("RMSprop", dict(lr=1e-3, alpha=0.9, momentum=0.9, eps=1e-7)), None))
        acc = np.full_like(p, 0.1)
        fast = ops.bind_adagrad_update(p, g, acc)
        cases.append(("adagrad_update", lambda f=fast: f(1e-3), lambda: reference.adagrad_update(p, g, acc, lr=1e-3),
                      4, ("Adagrad", dict(lr=1e-3, initial_accumulator_value=0.1, eps=1e-7)), None))
        m, v = np.zeros_like(p), np.zeros_like(p)
        fast = ops.bind_adam_keras_update(p, g, m, v, global_clipnorm=1.0)
        cases.append(("adam+global_clipnorm", lambda f=fast: f(10, 1e-3),
                      lambda: reference.adam_keras_update(p, g, m, v, step=10, lr=1e-3, global_clipnorm=1.0), 8,
                      ("Adam", dict(lr=1e-3, eps=1e-7)), 1.0))
        for name, fast_fn, ref_fn, touched, (tname, tkw), clip in cases:
            fns = [fast_fn, ref_fn]
            label = None
            if torch is not None:
                tp = torch.tensor(p.copy(), requires_grad=True)
                tp.grad = torch.tensor(g.copy())
                topt, label = _torch_optimizer(torch, getattr(torch.optim, tname), tp, **tkw)
                if clip is None:
                    fns.append(topt.step)
                else:
                    def clipped_step(topt=topt, tp=tp):
                        torch.nn.utils.clip_grad_norm_([tp], clip, foreach=True)
                        topt.step()
                    fns.append(clipped_step)
            times = timeit_interleaved(fns)
            row = {"kernel": name, "shape": f"{n:.0e} params", "dtype": np.dtype(dtype).name,
                   "fast_us": times[0] * 1e6, "gbytes_per_s": touched * n * p.itemsize / times[0] / 1e9,
                   "ref_us": times[1] * 1e6, "speedup_vs_ref": times[1] / times[0]}
            if torch is not None:
                row.update(torch_us=times[2] * 1e6, torch_over_fast=times[2] / times[0], torch_variant=label)
            rows.append(row)
            _print_row(row)
    return rows


def _print_row(row):
    parts = [f"{row['kernel']:<18} {row['shape']:<22} {row['dtype']:<8} fast {row['fast_us']:10.1f} us"]
    if "gflops" in row:
        parts.append(f"{row['gflops']:6.1f} GFLOP/s")
    if "speedup_vs_ref" in row:
        parts.append(f"x{row['speedup_vs_ref']:8.1f} vs reference")
    if "speedup_vs_naive" in row:
        parts.append(f"x{row['speedup_vs_naive']:6.2f} vs naive NumPy")
    if "speedup_vs_naive_warm" in row:
        parts.append(f"(x{row['speedup_vs_naive_warm']:5.2f} with its memory kept)")
    if "torch_over_fast" in row:
        parts.append(f"torch {row['torch_us']:10.1f} us  ratio torch/fast {row['torch_over_fast']:5.2f}")
    print("  ".join(parts), flush=True)


def to_markdown(facts, rows):
    lines = ["# fastconv kernel benchmark", "", "Machine: " + json.dumps(facts), "",
             "| kernel | shape | dtype | fastconv (us) | GFLOP/s | x vs reference / naive "
             "| PyTorch (us) | PyTorch / fastconv |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speed = r.get("speedup_vs_ref", r.get("speedup_vs_naive", float("nan")))
        speed = f"{speed:.1f}"
        if "speedup_vs_naive_warm" in r:
            speed += f" ({r['speedup_vs_naive_warm']:.1f} with the naive update's memory kept)"
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['dtype']} | {r['fast_us']:.1f} "
                     f"| {r.get('gflops', float('nan')):.1f} | {speed} | {r.get('torch_us', float('nan')):.1f} "
                     f"| {r.get('torch_over_fast', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


GROUPS = ("conv", "elementwise", "activations", "norm_pool", "adam", "optimizers")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for fastconv and PyTorch (default 2)")
    parser.add_argument("--out", default="bench/results", help="directory for kernels.json and kernels.md")
    parser.add_argument("--only", choices=GROUPS, action="append",
                        help="run only these groups (repeatable)")
    parser.add_argument("--quick", action="store_true", help="skip the slowest reference timings")
    parser.add_argument("--openblas-coretype", metavar="NAME",
                        help="re-run with OPENBLAS_CORETYPE=NAME set before NumPy loads (e.g. SkylakeX)")
    args = parser.parse_args(argv)
    if args.openblas_coretype and os.environ.get("OPENBLAS_CORETYPE") != args.openblas_coretype:
        env = dict(os.environ, OPENBLAS_CORETYPE=args.openblas_coretype)
        rest = [a for a in (argv if argv is not None else sys.argv[1:])]
        return subprocess.call([sys.executable, "-m", "fastconv.benchmarks"] + rest, env=env)
    ops.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass
    torch = _torch(args.threads)
    facts = machine_facts()
    facts["torch"] = torch.__version__ if torch is not None else "not installed"
    print(json.dumps(facts, indent=1), flush=True)
    groups = args.only or list(GROUPS)
    rows = []
    for dtype in (np.float32, np.float64):
        if "conv" in groups:
            rows += bench_conv(torch, dtype, args.quick)
        if "elementwise" in groups:
            rows += bench_elementwise(torch, dtype)
        if "activations" in groups:
            rows += bench_activations(torch, dtype)
        if "norm_pool" in groups:
            rows += bench_norm_pool(torch, dtype)
    if "adam" in groups:
        rows += bench_adam(torch, np.float32, [100_000, 10_000_000])
    if "optimizers" in groups:
        rows += bench_optimizers(torch, np.float32, [100_000, 10_000_000])
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "kernels.json"), "w") as f:
        json.dump({"machine": facts, "rows": rows}, f, indent=1)
    with open(os.path.join(args.out, "kernels.md"), "w") as f:
        f.write(to_markdown(facts, rows))
    print(f"wrote {args.out}/kernels.json and {args.out}/kernels.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
