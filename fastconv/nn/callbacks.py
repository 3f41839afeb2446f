"""Training-loop hooks: :class:`Callback` and :class:`History` (what ``fit`` returns)."""

__all__ = ["Callback", "History"]


class Callback:
    """Base class for the hooks the training loop calls.

    ``on_epoch_begin(epoch, logs)``, ``on_batch_end(batch, logs)`` and ``on_epoch_end(epoch, logs)``:
    ``epoch`` and ``batch`` count from 0.  A batch's ``logs`` hold the running means of the epoch so far
    (``loss``, and each metric) and ``batch_loss``, the loss of that batch alone; an epoch's logs hold the
    epoch means and, with validation data, ``val_loss`` and ``val_<metric>``.  ``self.model`` is the model
    being trained.  Setting ``model.stop_training = True`` ends training after the current epoch.
    """

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass


class History(Callback):
    """What ``fit`` returns: ``history.history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ... per epoch."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.append(epoch, logs or {})

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
