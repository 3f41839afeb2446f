"""``keras.callbacks``: the core's callbacks (fastconv.nn.callbacks), Keras's names, arguments and hooks.

A callback class of your own (a subclass of ``keras.callbacks.Callback``) sees the Keras face model as
``self.model`` (its ``stop_training``, ``get_weights``, ``save``, ``optimizer``); the core's own callbacks
work on the core model the face wraps.
"""
from ..nn import callbacks as _core

__all__ = ["Callback", "History"]   # and, from the core, EarlyStopping, ModelCheckpoint, ... (see _KERAS_NAMES)

Callback = _core.Callback
History = _core.History

_KERAS_NAMES = ("EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger",
                "TerminateOnNaN", "ProgbarLogger", "LambdaCallback", "TensorBoard", "BackupAndRestore",
                "RemoteMonitor", "SwapEMAWeights", "CallbackList")


def __getattr__(name):
    if hasattr(_core, name) and not name.startswith("_"):
        return getattr(_core, name)
    if name in _KERAS_NAMES:
        raise NotImplementedError(f"keras.callbacks.{name} is not supported by this fastconv (its core "
                                  f"fastconv.nn.callbacks has no {name})")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
