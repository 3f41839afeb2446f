"""Training benchmark: seed 000's CNN in fastconv vs PyTorch (and the seed's own loops), same data and optimizer.

1. per-sample training (batch 1, float64, 1,000 images): us/sample for fastconv, PyTorch and the seed's loops
   (the seed is timed on --seed-samples images; it is ~8 ms per image);
2. batch 32, float32, 4,000 images x 3 epochs: us/sample and test accuracy for fastconv and PyTorch.
Ratios are measured in one run; 2 threads each by default.  The machines are shared and their speed
drifts by up to 1.7x within minutes, so fastconv and PyTorch run alternately for --rounds rounds (each a
fresh model doing the same work) and each reports its fastest round (all rounds are in the JSON).
"""
import argparse
import json
import time

import numpy as np

import fastconv
from fastconv import datasets, optimizers
from fastconv.zoo import seed_cnn


def fastconv_run(x, y, xt, yt, batch, epochs, dtype, seed=0):
    model = seed_cnn(dtype=dtype, seed=seed)
    model.compile(optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.build(x.shape[1:] if x.ndim == 4 else (1,) + x.shape[1:])
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - t0
    return seconds / (len(x) * epochs) * 1e6, model.evaluate(xt, yt)["accuracy"]


def torch_run(torch, x, y, xt, yt, batch, epochs, dtype, seed=0):
    torch.manual_seed(seed)
    tdt = torch.float64 if dtype == "float64" else torch.float32
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 16, 8), nn.ReLU(), nn.Conv2d(16, 8, 4, stride=2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(648, 10)).to(tdt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    X = torch.tensor(x[:, None], dtype=tdt)
    Y = torch.tensor(y)
    gen = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.tensor(gen.permutation(len(x)))
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = (net(torch.tensor(xt[:, None], dtype=tdt)).argmax(1).numpy() == yt).mean()
    return seconds / (len(x) * epochs) * 1e6, float(acc)


def seed_loops(trainimages, trainlabels):
    """Seed 000's per-sample forward/backward/Adam loops, kept as the seed wrote them (timing only)."""
    rng = np.random.default_rng(0)
    fsh = fsw = 8
    fsh2 = fsw2 = 4
    filts, filts2, step, step2, classes = 16, 8, 1, 2, 10
    rsh = rsw = 21
    rsh2 = rsw2 = 9
    kern = rng.normal(0, 0.05, (filts, fsh, fsw))
    kb = np.zeros(filts)
    kern2 = rng.normal(0, 0.05, (filts2, filts, fsh2, fsw2))
    kb2 = np.zeros(filts2)
    w = rng.normal(0, 0.05, (classes, filts2, rsh2, rsw2))
    b = np.zeros(classes)
    state = {k: 0 for k in ("mw", "vw", "mb", "vb", "mk", "vk", "mk2", "vk2", "mkb", "vkb", "mkb2", "vkb2")}
    lr, b1, b2, eps = .001, .9, .999, 1e-7
    t0 = time.perf_counter()
    for i in range(len(trainlabels)):
        xx = trainimages[i]
        k = np.zeros((filts, rsh, rsw))
        for j in range(rsh):
            for jj in range(rsw):
                k[:, j, jj] = (kern * xx[step * j:step * j + fsh, step * jj:step * jj + fsw].reshape(1, fsh, fsw)).sum(axis=(1, 2)) + kb  # noqa: E501
        kr = np.maximum(0, k)
        kk = np.zeros((filts2, rsh2, rsw2))
        for j0 in range(rsh2):
            for jj0 in range(rsw2):
                kk[:, j0, jj0] = (kern2 * kr[:, step2 * j0:step2 * j0 + fsh2, step2 * jj0:step2 * jj0 + fsw2].reshape(1, filts, fsh2, fsw2)).sum(axis=(1, 2, 3)) + kb2  # noqa: E501
        kkr = np.maximum(0, kk)
        x = (w * kkr.reshape(1, filts2, rsh2, rsw2)).sum(axis=(1, 2, 3)) + b
        e = np.exp(x - x.max())
        dLdx = -e / e.sum()
        dLdx[trainlabels[i]] += 1
        dLdw = dLdx.reshape(classes, 1, 1, 1) * kkr.reshape(1, filts2, rsh2, rsw2)
        lrt = lr * (1 - b2 ** (i + 1)) ** .5 / (1 - b1 ** (i + 1))
        state["mw"] = b1 * state["mw"] + (1 - b1) * dLdw
        state["vw"] = b2 * state["vw"] + (1 - b2) * dLdw ** 2
        w = w + lrt * state["mw"] / (state["vw"] ** .5 + eps)
        dLdkk = (dLdx.reshape(classes, 1, 1, 1) * w).sum(axis=0) * (kk > 0)
        dLdkern2 = np.zeros((filts2, filts, fsh2, fsw2))
        for f in range(filts2):
            for j000 in range(fsh2):
                for jj000 in range(fsw2):
                    dLdkern2[f, :, j000, jj000] = (dLdkk[f].reshape(1, rsh2, rsw2) * kr[:, j000:j000 + rsh2, jj000:jj000 + rsw2]).sum(axis=(1, 2))  # noqa: E501
        state["mk2"] = b1 * state["mk2"] + (1 - b1) * dLdkern2
        state["vk2"] = b2 * state["vk2"] + (1 - b2) * dLdkern2 ** 2
        kern2 = kern2 + lrt * state["mk2"] / (state["vk2"] ** .5 + eps)
        dLdkr = np.zeros((filts, rsh, rsw))
        for ooo in range(filts):
            for o in range(rsh2):
                for oo in range(rsw2):
                    dLdkr[ooo, o * step2:o * step2 + fsh2, oo * step2:oo * step2 + fsw2] += (dLdkk[:, o, oo].reshape(filts2, 1, 1) * kern2[:, ooo, :, :]).sum(axis=0)  # noqa: E501
        dLdk = dLdkr * (k > 0)
        dLdkern = np.zeros((filts, fsh, fsw))
        for j00 in range(fsh):
            for jj00 in range(fsw):
                dLdkern[:, j00, jj00] = (xx[j00:j00 + rsw, jj00:jj00 + rsh].reshape(1, rsw, rsh) * dLdk).sum(axis=(1, 2))  # noqa: E501
        state["mk"] = b1 * state["mk"] + (1 - b1) * dLdkern
        state["vk"] = b2 * state["vk"] + (1 - b2) * dLdkern ** 2
        kern = kern + lrt * state["mk"] / (state["vk"] ** .5 + eps)
    return (time.perf_counter() - t0) / len(trainlabels) * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed-samples", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per framework (default 3)")
    p.add_argument("--out", default="bench/results/train.json")
    args = p.parse_args()
    fastconv.set_num_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    (xtr, ytr), (xte, yte) = datasets.load_mnist()
    results = {}
    x64, xt64 = xtr[:1000] / 255.0, xte / 255.0
    x32, xt32 = (xtr / np.float32(255)).astype(np.float32), (xte / np.float32(255)).astype(np.float32)
    setups = {"per_sample_f64": (x64, ytr[:1000], xt64, 1, 1, "float64"),
              "batch32_f32": (x32, ytr, xt32, 32, 3, "float32")}
    for key, (x, y, xt, batch, epochs, dtype) in setups.items():
        runs = {"fastconv": [], "torch": []}
        for _ in range(max(1, args.rounds)):
            runs["fastconv"].append(fastconv_run(x, y, xt, yte, batch, epochs, dtype))
            if torch is not None:
                runs["torch"].append(torch_run(torch, x, y, xt, yte, batch, epochs, dtype))
        us, acc = min(runs["fastconv"])
        res = results[key] = {"fastconv_us": us, "fastconv_acc": acc,
                              "fastconv_rounds_us": [r[0] for r in runs["fastconv"]]}
        if key == "per_sample_f64":
            res["seed_loops_us"] = seed_loops(x64[:args.seed_samples], ytr[:args.seed_samples])
            res["seed_over_fastconv"] = res["seed_loops_us"] / us
        if torch is not None:
            tus, tacc = min(runs["torch"])
            res.update(torch_us=tus, torch_acc=tacc, torch_rounds_us=[r[0] for r in runs["torch"]],
                       torch_over_fastconv=tus / us)
    print(json.dumps(results, indent=1))
    import os

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
