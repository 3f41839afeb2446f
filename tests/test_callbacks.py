"""Keras callbacks on the core model: hook order and logs, History, EarlyStopping, ModelCheckpoint,
ReduceLROnPlateau, LearningRateScheduler, CSVLogger, TerminateOnNaN, ProgbarLogger, LambdaCallback."""
import csv
import warnings

import numpy as np
import pytest

from fastconv import Sequential, layers, load_model, optimizers
from fastconv.nn import callbacks as cbs


def _model(seed=0, lr=0.01):
    model = Sequential([layers.Dense(6, activation="tanh"), layers.Dense(3, activation="softmax")],
                       dtype="float64", seed=seed)
    model.compile(optimizers.SGD(lr), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def _data(n=20, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


class Script(cbs.Callback):
    """Writes a scripted value of ``key`` into each epoch's logs (runs before the callbacks after it) and
    records the weights at each epoch's end."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.weights = key, values, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.params.tobytes())


class Recorder(cbs.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", sorted(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, dict(logs)))

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, dict(logs)))

    def on_test_begin(self, logs=None):
        self.events.append(("test_begin",))

    def on_test_end(self, logs=None):
        self.events.append(("test_end", dict(logs)))


def test_hooks_order_params_and_logs():
    x, y = _data(10)
    rec = Recorder()
    model = _model()
    h = model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), callbacks=[rec], verbose=0, shuffle=False)
    kinds = [e[0] for e in rec.events]
    per_epoch = ["epoch_begin"] + ["batch_begin", "batch_end"] * 3 + ["test_begin", "test_end", "epoch_end"]
    assert kinds == ["train_begin"] + per_epoch * 2 + ["train_end"]
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 3} and rec.model is model
    batch_logs = [e[2] for e in rec.events if e[0] == "batch_end"][:3]
    assert [b["size"] for b in batch_logs] == [4, 4, 2]
    # running means: the third batch's "loss" is the size-weighted mean of the three batch losses
    assert batch_logs[2]["loss"] == pytest.approx(sum(b["batch_loss"] * b["size"] for b in batch_logs) / 10)
    epoch_logs = [e[2] for e in rec.events if e[0] == "epoch_end"]
    assert epoch_logs[0]["loss"] == batch_logs[2]["loss"]
    assert epoch_logs == [{k: v[i] for k, v in h.history.items()} for i in range(2)]
    test_end = [e[1] for e in rec.events if e[0] == "test_end"]
    assert test_end[1] == {"loss": h.history["val_loss"][1], "accuracy": h.history["val_accuracy"][1]}
    assert rec.events[-1] == ("train_end", ["accuracy", "loss", "val_accuracy", "val_loss"])


def test_old_batch_hook_names_and_lambda_callback():
    x, y = _data(10)
    seen = {"old": [], "lambda": [], "epochs": [], "end": 0}

    class Old(cbs.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen["old"].append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen["old"].append(("end", batch))

    lam = cbs.LambdaCallback(on_train_batch_end=lambda batch, logs: seen["lambda"].append(batch),
                             on_epoch_end=lambda epoch, logs: seen["epochs"].append(epoch),
                             on_train_end=lambda logs: seen.__setitem__("end", seen["end"] + 1))
    _model().fit(x, y, batch_size=5, epochs=2, callbacks=[Old(), lam], verbose=0)
    assert seen["old"] == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1)] * 2
    assert seen["lambda"] == [0, 1, 0, 1] and seen["epochs"] == [0, 1] and seen["end"] == 1
    with pytest.raises(TypeError, match="not a callback hook"):
        cbs.LambdaCallback(on_epoch_ending=print)


def test_history_is_the_given_one_and_model_history():
    x, y = _data(10)
    model = _model()
    mine = cbs.History()
    h = model.fit(x, y, epochs=3, callbacks=[mine], verbose=0)
    assert h is mine and model.history is mine and mine.epoch == [0, 1, 2] and len(mine.history["loss"]) == 3


# ------------------------------------------------------------------------------------------ EarlyStopping

def _early_stop_epoch_by_hand(values, patience, min_delta=0.0, mode="min", baseline=None):
    """Keras 3's rule, written out: (the epoch where training stops or None, the best epoch)."""
    best, wait, best_epoch = None, 0, 0
    better = (lambda a, b: a + min_delta < b) if mode == "min" else (lambda a, b: a - min_delta > b)
    for epoch, v in enumerate(values):
        wait += 1
        if best is None or better(v, best):
            best, best_epoch = v, epoch
            if baseline is None or better(v, baseline):
                wait = 0
            continue
        if wait >= patience and epoch > 0:
            return epoch, best_epoch
    return None, best_epoch


@pytest.mark.parametrize("values,patience,kwargs", [
    ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 1.0], 2, {}),
    ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 1.0], 3, {}),
    ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 1.0], 0, {}),
    ([1, 0.95, 0.92, 0.85, 0.8, 0.4, 0.3, 0.2], 2, {"min_delta": 0.1}),
    ([0.1, 0.3, 0.2, 0.25, 0.35, 0.3, 0.2, 0.1], 2, {"mode": "max"}),
    ([5, 4, 3, 2.5, 2.4, 2.3, 2.2, 2.1], 2, {"baseline": 1.0}),
    ([5, 4, 4, 4, 4, 4, 4, 4], 2, {"baseline": 1.0}),              # stops at epoch 2 (3 without the baseline)
])
def test_early_stopping_stops_at_the_expected_epoch_and_restores_the_best_weights(values, patience, kwargs):
    x, y = _data(12)
    model = _model()
    script = Script("val_score", values)
    mode = kwargs.get("mode", "min")
    es = cbs.EarlyStopping(monitor="val_score", patience=patience, restore_best_weights=True,
                           **{"mode": mode, **kwargs})
    h = model.fit(x, y, batch_size=4, epochs=len(values), callbacks=[script, es], verbose=0)
    stop, best = _early_stop_epoch_by_hand(values, patience, kwargs.get("min_delta", 0.0), mode,
                                           kwargs.get("baseline"))
    ran = len(values) if stop is None else stop + 1
    assert h.epoch == list(range(ran))
    assert es.stopped_epoch == (stop or 0)
    assert es.best_epoch == best
    assert model.params.tobytes() == script.weights[best]


def test_early_stopping_restores_the_state_buffer_too():
    x, y = _data(12)
    model = Sequential([layers.Dense(6, activation="tanh"), layers.BatchNormalization(),
                        layers.Dense(3, activation="softmax")], dtype="float64", seed=0)
    model.compile(optimizers.SGD(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    states = []

    class Bump(Script):
        def on_epoch_end(self, epoch, logs=None):
            self.model.state += 1.0                   # the running statistics move at each epoch
            states.append(self.model.state.copy())
            super().on_epoch_end(epoch, logs)

    es = cbs.EarlyStopping(monitor="val_score", mode="min", patience=1, restore_best_weights=True)
    model.fit(x, y, epochs=5, callbacks=[Bump("val_score", [3, 1, 2, 2, 2]), es], verbose=0)
    assert model.state.size == 12 and es.best_epoch == 1
    assert np.array_equal(model.state, states[1]) and not np.array_equal(model.state, states[-1])


def test_early_stopping_on_real_loss_and_start_from_epoch():
    x, y = _data(12)
    es = cbs.EarlyStopping(monitor="loss", patience=0, start_from_epoch=3)
    script = Script("loss", [1, 2, 3, 4, 5, 6])      # never improves: stops at the first epoch it looks at + 1
    h = _model().fit(x, y, epochs=6, callbacks=[script, es], verbose=0)
    assert h.epoch == [0, 1, 2, 3, 4] and es.stopped_epoch == 4


def test_missing_monitor_warns_in_one_line_and_trains_on():
    x, y = _data(12)
    es = cbs.EarlyStopping(monitor="val_los")
    with pytest.warns(UserWarning, match="`val_los` which is not available. Available metrics are: loss,accuracy"):
        h = _model().fit(x, y, epochs=3, callbacks=[es], verbose=0)
    assert h.epoch == [0, 1, 2]
    with pytest.warns(UserWarning, match="not available"):
        _model().fit(x, y, epochs=2, callbacks=[cbs.ReduceLROnPlateau(monitor="nope")], verbose=0)


def test_auto_mode_reads_the_metric_direction():
    x, y = _data(12)
    model = _model()
    model.compile(optimizers.SGD(0.01), "sparse_categorical_crossentropy", ["accuracy", "mse"][:1])
    es = cbs.EarlyStopping(monitor="val_accuracy")
    model.fit(x, y, epochs=1, validation_data=(x, y), callbacks=[es], verbose=0)
    assert es.monitor_op is np.greater
    es = cbs.EarlyStopping(monitor="val_loss")
    model.fit(x, y, epochs=1, validation_data=(x, y), callbacks=[es], verbose=0)
    assert es.monitor_op is np.less
    es = cbs.EarlyStopping(monitor="val_score")
    with pytest.raises(ValueError, match="mode='max' or mode='min'"):
        model.fit(x, y, epochs=1, callbacks=[Script("val_score", [1.0]), es], verbose=0)


# ---------------------------------------------------------------------------------------- ModelCheckpoint

def test_model_checkpoint_formats_names_and_saves_the_model(tmp_path):
    x, y = _data(12)
    model = _model()
    path = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.npz")
    h = model.fit(x, y, epochs=3, validation_data=(x, y), verbose=0, callbacks=[cbs.ModelCheckpoint(path)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"ckpt-{e + 1:02d}-{v:.2f}.npz" for e, v in enumerate(h.history["val_loss"])]
    last = load_model(tmp_path / names[-1])
    assert last.params.tobytes() == model.params.tobytes()


def test_model_checkpoint_best_only(tmp_path):
    x, y = _data(12)
    values = [3.0, 2.0, 2.5, 1.0, 1.5]
    script = Script("val_score", values)
    ck = cbs.ModelCheckpoint(str(tmp_path / "m{epoch}.npz"), monitor="val_score", mode="min", save_best_only=True)
    _model().fit(x, y, epochs=5, callbacks=[script, ck], verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m1.npz", "m2.npz", "m4.npz"]
    assert load_model(tmp_path / "m4.npz").params.tobytes() == script.weights[3]
    # one name, overwritten by each better model
    script = Script("val_score", values)
    ck = cbs.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_score", mode="min", save_best_only=True)
    _model().fit(x, y, epochs=5, callbacks=[script, ck], verbose=0)
    assert load_model(tmp_path / "best.npz").params.tobytes() == script.weights[3] and ck.best == 1.0


def test_model_checkpoint_weights_only_and_bad_arguments(tmp_path):
    x, y = _data(12)
    model = _model()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[cbs.ModelCheckpoint(str(tmp_path / "w.npz"),
                                                                         save_weights_only=True)])
    with np.load(tmp_path / "w.npz") as f:
        assert f["params"].tobytes() == model.params.tobytes()
    with pytest.raises(NotImplementedError, match="save_freq=10"):
        cbs.ModelCheckpoint("x.npz", save_freq=10)
    with pytest.raises(ValueError, match="save_freq"):
        cbs.ModelCheckpoint("x.npz", save_freq="batch")
    with pytest.raises(KeyError, match="Failed to format"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[cbs.ModelCheckpoint(str(tmp_path / "{nope}.npz"))])


# ------------------------------------------------------------------------------- learning-rate callbacks

def _lrs_by_hand(values, lr, factor, patience, cooldown=0, min_lr=0.0, min_delta=1e-4):
    """Keras 3's ReduceLROnPlateau (mode min), written out: the lr in force during each epoch."""
    best, wait, cool, out = None, 0, 0, []
    for v in values:
        out.append(lr)
        if cool > 0:
            cool -= 1
            wait = 0
        if best is None or v - (-min_delta) < best:      # Keras: monitor_op(v - min_delta, best), min_delta < 0
            best, wait = v, 0
        elif cool <= 0:
            wait += 1
            if wait >= patience and lr > np.float32(min_lr):
                lr = max(lr * factor, min_lr)
                cool, wait = cooldown, 0
    return out


@pytest.mark.parametrize("kwargs", [dict(patience=2), dict(patience=1, cooldown=2), dict(patience=0, min_lr=0.02)])
def test_reduce_lr_on_plateau_changes_the_lr_at_the_right_epoch(kwargs):
    x, y = _data(12)
    values = [5, 4, 4, 4, 4, 3, 3, 3, 3, 3]
    model = _model(lr=0.1)
    lrs = []
    seen = cbs.LambdaCallback(on_epoch_begin=lambda epoch, logs: lrs.append(model.optimizer.learning_rate))
    rl = cbs.ReduceLROnPlateau(monitor="val_score", factor=0.5, mode="min", **kwargs)
    h = model.fit(x, y, epochs=len(values), callbacks=[seen, Script("val_score", values), rl], verbose=0)
    assert lrs == pytest.approx(_lrs_by_hand(values, 0.1, 0.5, **kwargs), rel=1e-15)
    assert h.history["learning_rate"] == lrs            # logged at the epoch's end, before any reduction
    with pytest.raises(ValueError, match="factor >= 1.0"):
        cbs.ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler():
    x, y = _data(12)
    model = _model(lr=0.1)
    lrs = []
    seen = cbs.LambdaCallback(on_epoch_begin=lambda epoch, logs: lrs.append(model.optimizer.learning_rate))
    sched = cbs.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5)
    h = model.fit(x, y, epochs=4, callbacks=[sched, seen], verbose=0)
    assert lrs == [0.1, 0.1, 0.05, 0.025] and h.history["learning_rate"] == lrs
    model.fit(x, y, epochs=2, callbacks=[cbs.LearningRateScheduler(lambda epoch: 0.3 / (epoch + 1))], verbose=0)
    assert model.optimizer.learning_rate == 0.15
    with pytest.raises(ValueError, match="should be a finite float"):
        model.fit(x, y, epochs=1, callbacks=[cbs.LearningRateScheduler(lambda epoch, lr: 1)], verbose=0)


# ------------------------------------------------------------------------------------- CSV, NaN, progbar

def test_csv_logger_content(tmp_path):
    x, y = _data(12)
    path = tmp_path / "log.csv"
    h = _model().fit(x, y, epochs=3, validation_data=(x, y), callbacks=[cbs.CSVLogger(path)], verbose=0)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keys = sorted(h.history)
    assert rows[0] == ["epoch"] + keys
    for epoch, row in enumerate(rows[1:]):
        assert row == [str(epoch)] + [str(h.history[k][epoch]) for k in keys]
    # append: no second header; no validation: val_ columns are NA
    h2 = _model().fit(x, y, epochs=2, callbacks=[cbs.CSVLogger(path, separator=";", append=True)], verbose=0)
    text = path.read_text().splitlines()
    assert len(text) == 6 and text[4] == ";".join(["0", str(h2.history["accuracy"][0]), str(h2.history["loss"][0]),
                                                    "NA", "NA"])
    cbs.CSVLogger(path)                      # a new logger without append starts the file afresh
    _model().fit(x, y, epochs=1, callbacks=[cbs.CSVLogger(path)], verbose=0)
    assert path.read_text().splitlines()[0] == "epoch,accuracy,loss,val_accuracy,val_loss"


def test_terminate_on_nan(capsys):
    x = np.random.default_rng(0).standard_normal((12, 4))
    y = np.full((12, 3), 1e200)              # the squared error overflows to inf on the first batch
    model = Sequential([layers.Dense(3)], dtype="float64", seed=0)
    model.compile("sgd", "mse")
    batches = []
    count = cbs.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        h = model.fit(x, y, batch_size=4, epochs=3, callbacks=[count, cbs.TerminateOnNaN()], verbose=0)
        assert batches == [0] and h.epoch == [0]
        assert "Batch 0: Invalid loss, terminating training" in capsys.readouterr().out
        with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0"):
            model.fit(x, y, batch_size=4, callbacks=[cbs.TerminateOnNaN(raise_error=True)], verbose=0)


def test_terminate_on_nan_stops_within_the_epoch():
    x, y = _data(20)

    class Poison(cbs.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                logs["loss"] = float("nan")

    batches = []
    count = cbs.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))
    h = _model().fit(x, y, batch_size=2, epochs=2, callbacks=[count, Poison(), cbs.TerminateOnNaN()], verbose=0)
    assert batches == [0, 1, 2] and h.epoch == [0]


def test_progbar_logger_given_explicitly(capsys):
    x, y = _data(12)
    _model().fit(x, y, epochs=2, callbacks=[cbs.ProgbarLogger()], verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - ") and " - loss: " in lines[1]
    assert "batch_loss" not in lines[1]


def test_lr_callbacks_read_a_schedule_but_do_not_set_it():
    x, y = _data(12)
    model = _model()

    class Halving:                                   # a learning-rate schedule: a function of the step
        def __call__(self, step):
            return 0.1 / (1 + step)

    class FakeOptimizer:
        learning_rate = Halving()
        iterations = 3

    model.optimizer = FakeOptimizer()
    rl = cbs.ReduceLROnPlateau(monitor="loss")
    rl.set_model(model)
    logs = {"loss": 1.0}
    rl.on_train_begin()
    rl.on_epoch_end(0, logs)
    assert logs["learning_rate"] == 0.025
    sched = cbs.LearningRateScheduler(lambda epoch, lr: lr)
    sched.set_model(model)
    with pytest.raises(TypeError, match="cannot set it"):
        sched.on_epoch_begin(0)
