"""Initializers: empirical moments and bounds against the formulas, fans, seeding, registry."""
import math

import numpy as np
import pytest

from fastconv import initializers as I

DENSE = (400, 300)          # (out, in): fan_in 300, fan_out 400
CONV = (64, 32, 5, 5)       # fan_in 32*25 = 800, fan_out 64*25 = 1600


def test_compute_fans_pytorch_layout():
    assert I.compute_fans(DENSE) == (300, 400)
    assert I.compute_fans(CONV) == (800, 1600)
    assert I.compute_fans((16, 1, 8, 8)) == (64, 1024)
    assert I.compute_fans((7,)) == (7, 7)
    assert I.compute_fans(CONV, fan_out=99) == (800, 99)


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize(
    "name,std_formula,uniform",
    [
        ("he_normal", lambda fi, fo: math.sqrt(2 / fi), False),
        ("he_uniform", lambda fi, fo: math.sqrt(2 / fi), True),
        ("glorot_normal", lambda fi, fo: math.sqrt(2 / (fi + fo)), False),
        ("glorot_uniform", lambda fi, fo: math.sqrt(2 / (fi + fo)), True),
        ("lecun_normal", lambda fi, fo: math.sqrt(1 / fi), False),
        ("lecun_uniform", lambda fi, fo: math.sqrt(1 / fi), True),
    ],
)
def test_presets_match_formulas(name, std_formula, uniform, shape):
    w = I.get(name)(shape, dtype=np.float64, rng=0)
    fan_in, fan_out = I.compute_fans(shape)
    std = std_formula(fan_in, fan_out)
    n = w.size
    # sample std of n draws has relative standard error ~ sqrt(kurtosis-1)/(2 sqrt(n)); 6 sigma margin
    assert abs(w.mean()) < 6 * std / math.sqrt(n)
    assert abs(w.std() / std - 1) < 6 * math.sqrt(2 / n)
    if uniform:
        bound = math.sqrt(3) * std
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    else:
        assert np.abs(w).max() > 3 * std  # untruncated: draws beyond 2 sigma exist (n >= 1e5)


def test_truncated_normal_variant_has_requested_std():
    init = I.VarianceScaling(2.0, "fan_in", "truncated_normal")
    w = init(CONV, dtype=np.float64, rng=1)
    std = math.sqrt(2 / 800)
    assert abs(w.std() / std - 1) < 6 * math.sqrt(2 / w.size)
    assert np.abs(w).max() <= 2 * std / I.TRUNCATION_STD


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (8, 3, 3, 3)])
def test_orthogonal(shape):
    w = I.Orthogonal(gain=2.0)(shape, dtype=np.float64, rng=3)
    m = w.reshape(shape[0], -1)
    small = min(m.shape)
    gram = m @ m.T if m.shape[0] == small else m.T @ m
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-12)


def test_simple_initializers():
    assert not I.zeros()((3, 4)).any()
    assert (I.ones()((2,)) == 1).all()
    assert (I.Constant(0.5)((2, 2), dtype=np.float64) == 0.5).all()
    w = I.RandomUniform(-0.5, 0.5)((100_000,), rng=0)
    assert w.min() >= -0.5 and w.max() < 0.5 and abs(w.mean()) < 0.01
    t = I.TruncatedNormal(1.0, 0.1)((100_000,), dtype=np.float64, rng=0)
    assert np.abs(t - 1.0).max() <= 0.2


def test_seed001_large_random_is_expressible():
    """Seed 001: ``np.random.randn(*shape) * scale`` with scale=10."""
    w = I.RandomNormal(stddev=10.0)((12, 2), dtype=np.float64, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(w, np.random.default_rng(5).standard_normal((12, 2)) * 10.0)


def test_seed000_fan_variants_via_overrides():
    """Seed 000's first conv: std = sqrt(2/(filts*fsw*fsh + filts*rsw*rsh)) with its own fans."""
    init = I.glorot_normal(fan_in=16 * 8 * 8, fan_out=16 * 21 * 21)
    assert math.isclose(init.std((16, 1, 8, 8)), math.sqrt(2 / (16 * 64 + 16 * 441)))


def test_seeding_and_dtype():
    a = I.he_normal()((10, 10), rng=7)
    b = I.he_normal()((10, 10), rng=np.random.default_rng(7))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, I.he_normal()((10, 10), rng=8))
    assert I.he_normal()((3, 3), dtype=np.float64).dtype == np.float64


def test_calculate_gain_as_pytorch():
    assert I.calculate_gain("relu") == math.sqrt(2)
    assert I.calculate_gain("tanh") == 5 / 3
    assert I.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        I.calculate_gain("swish")
    torch = pytest.importorskip("torch")
    for name in ("relu", "tanh", "selu", "sigmoid", "linear"):
        assert I.calculate_gain(name) == torch.nn.init.calculate_gain(name)


def test_registry():
    assert isinstance(I.get("he_normal"), I.VarianceScaling)
    assert I.get("Kaiming-Normal").get_config() == I.get("he_normal").get_config()
    assert isinstance(I.get(I.Zeros), I.Zeros)
    inst = I.Orthogonal()
    assert I.get(inst) is inst and I.get(None) is None

    def custom(shape, dtype=np.float32, rng=None):
        return np.full(shape, 3.0, dtype)

    assert I.get(custom) is custom
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        I.get("he_norml")
    with pytest.raises(ValueError, match="valid names"):
        I.get("nonsense_init")
    with pytest.raises(TypeError):
        I.get(42)


@pytest.mark.parametrize(
    "call,exc",
    [
        (lambda: I.he_normal()((3, -1)), ValueError),
        (lambda: I.he_normal()((3, 3), dtype=np.int32), TypeError),
        (lambda: I.he_normal()((3, 3), rng="seed"), TypeError),
        (lambda: I.VarianceScaling(mode="fan_middle"), ValueError),
        (lambda: I.VarianceScaling(distribution="cauchy"), ValueError),
        (lambda: I.VarianceScaling(scale=0), ValueError),
        (lambda: I.Orthogonal()((5,)), ValueError),
    ],
)
def test_bad_input(call, exc):
    with pytest.raises(exc):
        call()
