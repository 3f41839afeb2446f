"""Learning-rate schedules: Keras 3's formulas at chosen steps, argument checks, config round trips."""
import json
import math

import pytest

from fastconv.nn import schedules


@pytest.mark.parametrize("step", [0, 1, 7, 100, 999, 1000, 1001, 5000])
def test_exponential_decay(step):
    s = schedules.ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96)
    assert s(step) == pytest.approx(0.1 * 0.96 ** (step / 1000), rel=1e-15)
    st = schedules.ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96, staircase=True)
    assert st(step) == pytest.approx(0.1 * 0.96 ** (step // 1000), rel=1e-15)


@pytest.mark.parametrize("step", [0, 1, 7, 100, 999, 1000, 1001, 5000])
def test_inverse_time_decay(step):
    s = schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert s(step) == pytest.approx(0.1 / (1 + 0.5 * step / 10), rel=1e-15)
    st = schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert st(step) == pytest.approx(0.1 / (1 + 0.5 * (step // 10)), rel=1e-15)


def test_piecewise_constant_decay_boundaries_as_keras():
    s = schedules.PiecewiseConstantDecay([100, 110], [1.0, 0.5, 0.1])
    # values[0] while step <= boundaries[0]; values[1] for boundaries[0] < step <= boundaries[1]; then values[-1]
    assert [s(x) for x in (0, 100, 101, 110, 111, 10**6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    assert schedules.PiecewiseConstantDecay([], [0.3])(5) == 0.3


@pytest.mark.parametrize("step", [0, 1, 250, 500, 999, 1000, 2000])
def test_cosine_decay(step):
    s = schedules.CosineDecay(0.1, decay_steps=1000, alpha=0.1)
    k = min(step, 1000)
    assert s(step) == pytest.approx(0.1 * (0.9 * 0.5 * (1 + math.cos(math.pi * k / 1000)) + 0.1), rel=1e-15)


@pytest.mark.parametrize("step", [0, 1, 50, 99, 100, 101, 600, 1100, 5000])
def test_cosine_decay_with_warmup(step):
    s = schedules.CosineDecay(0.0, decay_steps=1000, warmup_target=0.1, warmup_steps=100)
    k = min(step, 1100)
    if k < 100:
        expected = (0.1 - 0.0) * (k / 100) + 0.0
    else:
        expected = 0.1 * (0.5 * (1 + math.cos(math.pi * (k - 100) / 1000)))
    assert s(step) == pytest.approx(expected, rel=1e-15, abs=1e-18)


BAD = [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), ValueError, "decay_steps` must be > 0"),
    (lambda: schedules.InverseTimeDecay(0.1, -1, 0.5), ValueError, "decay_steps"),
    (lambda: schedules.CosineDecay(0.1, 0), ValueError, "decay_steps"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_steps=-1), ValueError, "warmup_steps"),
    (lambda: schedules.ExponentialDecay("0.1", 10, 0.5), TypeError, "initial_learning_rate"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5, staircase=1), TypeError, "staircase"),
    (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2]), ValueError, "1 less than"),
    (lambda: schedules.PiecewiseConstantDecay([2, 1], [0.1, 0.2, 0.3]), ValueError, "increasing"),
    (lambda: schedules.PiecewiseConstantDecay(5, [0.1]), TypeError, "boundaries"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5)("3"), TypeError, "step"),
    (lambda: schedules.deserialize({"class": "PolynomialDecay", "config": {}}), ValueError, "ExponentialDecay"),
    (lambda: schedules.LearningRateSchedule()(0), NotImplementedError, "__call__"),
]


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("schedule", [
    schedules.ExponentialDecay(0.1, 100, 0.9, staircase=True),
    schedules.PiecewiseConstantDecay([10, 20], [0.1, 0.01, 0.001]),
    schedules.CosineDecay(0.01, 50, alpha=0.05, warmup_target=0.1, warmup_steps=5),
    schedules.InverseTimeDecay(0.1, 5, 2.0, name="mine"),
], ids=lambda s: type(s).__name__)
def test_config_round_trips_through_json(schedule):
    text = json.dumps(schedules.serialize(schedule))
    again = schedules.deserialize(json.loads(text))
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert [again(k) for k in range(0, 120, 7)] == [schedule(k) for k in range(0, 120, 7)]
    assert type(schedule).from_config(schedule.get_config()).get_config() == schedule.get_config()
