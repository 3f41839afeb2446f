"""Seed 000's two-layer CNN ("Value of Random Numbers in ML"), rewritten on fastconv.ops.

Same network, same variable names, same order as the seed: conv 16@8x8 stride 1 -> ReLU -> conv 8@4x4
stride 2 -> ReLU -> dense 10 -> softmax, trained one image at a time with the seed's Adam (epsilon-hat form,
lr 1e-3, eps 1e-7).  The seed's explicit loops become one kernel call each.

Bug fixed: the seed's weight gradient of the stride-2 conv slices ``kr[:, j000:j000+rsh2, ...]``, stepping
by 1 where the forward pass stepped by ``step2`` (= 2).  ``ops.conv2d_backward(..., stride=step2)`` uses
the same strided windows as the forward pass; tests/test_conv.py shows the seed's version is off by as much
as the gradient itself.

Run: python examples/seed_cnn.py [--data mndata.npz] [--trains 1000] [--tests 1000]
"""
import argparse
import time

import numpy as np

from fastconv import datasets, ops

parser = argparse.ArgumentParser()
parser.add_argument("--data", default=None, help="MNIST file (seed 000's npz works); default: embedded subset")
parser.add_argument("--trains", type=int, default=1000)
parser.add_argument("--tests", type=int, default=1000)
args = parser.parse_args()

(trainimages, trainlabels), (testimages, testlabels) = datasets.load_mnist(args.data)
trains, tests = min(args.trains, len(trainlabels)), min(args.tests, len(testlabels))
trainimages, testimages = trainimages[:trains] / 255, testimages[:tests] / 255   # float64, as the seed
rng = np.random.default_rng(0)                                                   # seed: np.random.seed(0)
classes = 10
imh, imw = trainimages.shape[1], trainimages.shape[2]
lr = .001
fsh, fsw, fsh2, fsw2 = 8, 8, 4, 4
filts, filts2 = 16, 8
step, step2 = 1, 2
rsh, rsw = (imh - fsh) // step + 1, (imw - fsw) // step + 1
rsh2, rsw2 = (rsh - fsh2) // step2 + 1, (rsw - fsw2) // step2 + 1

# the seed's initializers: Glorot normal (its own fans) on the first conv, He normal after
kern = rng.normal(0, np.sqrt(2 / (filts * fsw * fsh + filts * rsw * rsh)), (filts, 1, fsh, fsw))
kb = np.zeros(filts)
kern2 = rng.normal(0, np.sqrt(2 / (filts2 * filts * fsw2 * fsh2)), (filts2, filts, fsh2, fsw2))
kb2 = np.zeros(filts2)
w = rng.normal(0, np.sqrt(2 / (filts2 * rsw2 * rsh2)), (classes, filts2 * rsh2 * rsw2))
b = np.zeros(classes)
b1, b2, eps = .9, .999, 1e-7
params = [kern, kb, kern2, kb2, w, b]
moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]


def forward(xx):
    k = ops.conv2d_forward(xx.reshape(1, 1, imh, imw), kern, kb, stride=step)     # seed: loops over j, jj
    kr, krmask = ops.relu_forward(k)                                              # RELU activation function
    kk = ops.conv2d_forward(kr, kern2, kb2, stride=step2)                         # seed: loops over j0, jj0
    kkr, kkrmask = ops.relu_forward(kk)                                           # RELU activation function
    x = kkr.reshape(1, -1) @ w.T + b
    return kr, krmask, kkr, kkrmask, x


start = time.perf_counter()
for i in range(trains):
    xx, label = trainimages[i], trainlabels[i]
    kr, krmask, kkr, kkrmask, x = forward(xx)
    loss, dLdx = ops.softmax_cross_entropy(x, np.array([label]))                  # softmax + log-loss, fused
    dLdw = dLdx.T @ kkr.reshape(1, -1)
    dLdb = dLdx[0]
    dLdkk = ops.relu_backward((dLdx @ w).reshape(kkr.shape), kkrmask)             # derivative of RELU
    # FIXED: the seed's dLdkern2 stepped its window by 1; conv2d_backward steps by step2 like the forward pass
    dLdkr, dLdkern2, dLdkb2 = ops.conv2d_backward(dLdkk, kr, kern2, stride=step2)
    dLdk = ops.relu_backward(dLdkr, krmask)                                       # derivative of RELU
    _, dLdkern, dLdkb = ops.conv2d_backward(dLdk, xx.reshape(1, 1, imh, imw), kern, stride=step, need_dx=False)
    for p, g, (m, v) in zip(params, [dLdkern, dLdkb, dLdkern2, dLdkb2, dLdw, dLdb], moments):
        # the seed's update: lrt = lr*sqrt(1-b2^t)/(1-b1^t); p -= lrt*m/(sqrt(v)+eps)  (it adds the gradient of
        # the log-likelihood; we subtract the gradient of the loss: the same step)
        ops.adam_update(p, g, m, v, step=i + 1, lr=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=True)
train_seconds = time.perf_counter() - start

checke = np.zeros(tests)
for i in range(tests):
    checke[i] = testlabels[i] == np.argmax(forward(testimages[i])[-1])
print(f"trained on {trains} images in {train_seconds:.2f} s ({train_seconds / trains * 1e6:.0f} us/sample; "
      f"the seed's loops take ~8,450 us/sample)")
print(f"test accuracy: {len(np.flatnonzero(checke == 1)) / tests}")
