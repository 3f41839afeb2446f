"""``keras.optimizers.schedules``: the core's learning-rate schedules (fastconv.nn.schedules), Keras names
and formulas: ExponentialDecay, PiecewiseConstantDecay, CosineDecay, InverseTimeDecay."""
import importlib
import importlib.util

__all__ = ["available"]   # and the core's schedules, by the names in _NAMES

_NAMES = ("ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay", "InverseTimeDecay", "LearningRateSchedule",
          "CosineDecayRestarts", "PolynomialDecay")


def available():
    """Whether the core has fastconv.nn.schedules."""
    return importlib.util.find_spec("fastconv.nn.schedules") is not None


def __getattr__(name):
    if name in _NAMES:
        if not available():
            raise NotImplementedError(f"keras.optimizers.schedules.{name} is not supported by this fastconv: its "
                                      "core has no fastconv.nn.schedules")
        core = importlib.import_module("fastconv.nn.schedules")
        if not hasattr(core, name):
            raise NotImplementedError(f"keras.optimizers.schedules.{name} is not supported by fastconv")
        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
