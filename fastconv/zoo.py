"""The seed networks, built once for the CLI, the studies and the benchmarks."""
from .nn.layers import Conv2D, Dense, Flatten
from .nn.model import Sequential

__all__ = ["SEED_INITS", "seed_cnn", "moons_mlp"]

SEED_INITS = ("glorot_normal", "he_normal", "he_normal")  # seed 000's choice: Glorot first conv, He after


def seed_cnn(inits=SEED_INITS, dtype="float32", seed=0):
    """Seed 000's CNN: Conv 16@8x8 s1 ReLU -> Conv 8@4x4 s2 ReLU -> Dense 10 softmax (uncompiled)."""
    k1, k2, k3 = inits
    return Sequential([
        Conv2D(16, 8, strides=1, activation="relu", kernel_initializer=k1),
        Conv2D(8, 4, strides=2, activation="relu", kernel_initializer=k2),
        Flatten(),
        Dense(10, activation="softmax", kernel_initializer=k3),
    ], dtype=dtype, seed=seed)


def moons_mlp(init, seed, dtype="float64"):
    """Seed 001's network: Dense 12 ReLU -> 6 ReLU -> 1 sigmoid; ``init`` on the hidden layers, the output
    layer with the default (Glorot uniform), biases zero (uncompiled)."""
    return Sequential([Dense(12, activation="relu", kernel_initializer=init),
                       Dense(6, activation="relu", kernel_initializer=init),
                       Dense(1, activation="sigmoid")], dtype=dtype, seed=seed)
