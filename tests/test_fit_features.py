"""fit's Keras arguments: validation_split, validation_data triples, class_weight, sample_weight, verbose,
initial_epoch; evaluate / test_on_batch / train_on_batch with weights; argument checks."""
import numpy as np
import pytest

import fastconv
from fastconv import Sequential, layers, optimizers
from fastconv.nn import callbacks as cbs


def _clf(seed=0, units=3, act="softmax", loss="sparse_categorical_crossentropy", metrics=("accuracy",)):
    model = Sequential([layers.Dense(8, activation="tanh"), layers.Dense(units, activation=act)],
                       dtype="float64", seed=seed)
    model.compile(optimizers.Adam(0.01), loss, list(metrics))
    return model


def _data(n=30, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def test_validation_split_holds_out_the_last_samples_before_shuffling():
    x, y = _data(40)
    a = _clf()
    h = a.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0)
    b = _clf()
    b.fit(x[:30], y[:30], batch_size=8, epochs=2, verbose=0)        # the first 30 train, in the same order
    assert a.params.tobytes() == b.params.tobytes()
    last = a.evaluate(x[30:], y[30:])
    assert h.history["val_loss"][-1] == last["loss"] and h.history["val_accuracy"][-1] == last["accuracy"]
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]


def test_validation_split_rounds_down_the_training_part_as_keras():
    x, y = _data(10)
    seen = []
    record = cbs.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs["size"]))
    _clf().fit(x, y, batch_size=100, validation_split=0.33, verbose=0, callbacks=[record])
    assert seen == [6]                         # floor(10 * 0.67) = 6 train, 4 validate
    with pytest.raises(ValueError, match="too few to split"):
        _clf().fit(x[:1], y[:1], validation_split=0.5, verbose=0)


def test_validation_data_with_sample_weights():
    x, y = _data(30)
    xv, yv = _data(12, seed=2)
    wv = np.random.default_rng(3).uniform(0, 2, 12)
    model = _clf()
    h = model.fit(x, y, epochs=1, validation_data=(xv, yv, wv), verbose=0)
    expected = model.evaluate(xv, yv, sample_weight=wv)
    assert h.history["val_loss"] == [expected["loss"]]
    t = model._prepare_t(yv, 12)
    per = model.loss.per_sample(model.predict(xv), t, False)
    assert expected["loss"] == pytest.approx((wv * per).sum() / 12, rel=1e-12)
    # validation_data wins over validation_split (Keras)
    h2 = _clf().fit(x, y, epochs=1, validation_data=(xv, yv), validation_split=0.5, verbose=0)
    assert "val_loss" in h2.history


def test_validation_split_carries_the_sample_weights():
    x, y = _data(20)
    w = np.random.default_rng(4).uniform(0.5, 2, 20)
    model = _clf()
    h = model.fit(x, y, epochs=1, batch_size=5, validation_split=0.25, sample_weight=w, verbose=0)
    assert h.history["val_loss"] == [model.evaluate(x[15:], y[15:], sample_weight=w[15:])["loss"]]


@pytest.mark.parametrize("kind", ["sparse", "onehot", "binary"])
def test_class_weight_equals_the_equivalent_sample_weight(kind):
    x, labels = _data(36)
    class_weight = {0: 0.5, 1: 2.0, 2: 3.0}
    if kind == "sparse":
        y, make = labels, lambda: _clf()
    elif kind == "onehot":
        y, make = np.eye(3)[labels], lambda: _clf(loss="categorical_crossentropy")
    else:
        labels = labels % 2
        y, make = labels[:, None].astype(float), lambda: _clf(units=1, act="sigmoid", loss="binary_crossentropy")
    a, b = make(), make()
    ha = a.fit(x, y, batch_size=8, epochs=2, class_weight=class_weight, verbose=0)
    hb = b.fit(x, y, batch_size=8, epochs=2, sample_weight=np.array([class_weight[c] for c in labels]), verbose=0)
    assert a.params.tobytes() == b.params.tobytes()
    assert ha.history == hb.history


def test_class_weight_missing_classes_weigh_one_and_keys_may_be_strings():
    x, y = _data(24)
    a, b = _clf(), _clf()
    a.fit(x, y, batch_size=6, class_weight={"0": 4.0}, verbose=0)
    b.fit(x, y, batch_size=6, sample_weight=np.where(y == 0, 4.0, 1.0), verbose=0)
    assert a.params.tobytes() == b.params.tobytes()


def test_weighted_training_moves_the_weights_as_the_weighted_gradient():
    """One SGD step with weights equals the step along compute_gradients(sample_weight=w)."""
    x, y = _data(12)
    w = np.random.default_rng(5).uniform(0, 3, 12)
    a = _clf()
    a.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    loss, grads = a.compute_gradients(x, y, sample_weight=w)
    before = a.params.copy()
    result = a.train_on_batch(x, y, sample_weight=w)
    assert result["loss"] == loss
    np.testing.assert_allclose(a.params, before - 0.1 * grads, rtol=0, atol=1e-15)


def test_epoch_loss_is_the_size_weighted_mean_of_batch_losses_with_weights():
    x, y = _data(22)
    w = np.random.default_rng(6).uniform(0, 2, 22)
    batches = []
    record = cbs.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append((logs["batch_loss"], logs["size"])))
    h = _clf().fit(x, y, batch_size=8, sample_weight=w, callbacks=[record], verbose=0)
    assert [s for _, s in batches] == [8, 8, 6]
    assert h.history["loss"][0] == pytest.approx(sum(b * s for b, s in batches) / 22, rel=1e-12)


def test_evaluate_test_on_batch_train_on_batch_with_weights():
    x, y = _data(16)
    w = np.random.default_rng(7).uniform(0, 2, 16)
    model = _clf(metrics=("accuracy", "mse"))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], weighted_metrics=["accuracy"])
    full = model.evaluate(x, y, sample_weight=w)
    assert set(full) == {"loss", "accuracy", "weighted_accuracy"}
    hits = model.predict(x).argmax(1) == y
    assert full["accuracy"] == pytest.approx(hits.mean()) and full["weighted_accuracy"] == pytest.approx(
        (w * hits).sum() / w.sum())
    assert model.test_on_batch(x, y, sample_weight=w) == full
    assert model.evaluate(x, y, batch_size=5, sample_weight=w)["loss"] == pytest.approx(full["loss"], rel=1e-12)
    result = model.train_on_batch(x, y, sample_weight=w)
    assert result["loss"] == pytest.approx(full["loss"], rel=1e-12)
    assert result["weighted_accuracy"] == pytest.approx(full["weighted_accuracy"])
    r2 = _clf().train_on_batch(x, y, class_weight={0: 2.0})
    r3 = _clf().train_on_batch(x, y, sample_weight=np.where(y == 0, 2.0, 1.0))
    assert r2 == r3


def test_initial_epoch_and_epochs():
    x, y = _data(10)
    h = _clf().fit(x, y, epochs=5, initial_epoch=2, verbose=0)
    assert h.epoch == [2, 3, 4] and len(h.history["loss"]) == 3
    assert _clf().fit(x, y, epochs=2, initial_epoch=2, verbose=0).history == {}


def test_verbose_modes(capsys):
    x, y = _data(10)
    _clf().fit(x, y, epochs=2, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    _clf().fit(x, y, epochs=2, verbose=2, validation_data=(x, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2 - ") and "val_accuracy: " in lines[1]
    _clf().fit(x, y, epochs=2, verbose=1)
    assert "Epoch 2/2" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(validation_split=1.0), ValueError, r"validation_split must be a float in \[0, 1\)"),
    (dict(validation_split=-0.1), ValueError, "validation_split"),
    (dict(validation_split="0.2"), ValueError, "validation_split"),
    (dict(validation_data=(1, 2, 3, 4)), ValueError, "pair .* or a triple"),
    (dict(class_weight={0: 1.0}, sample_weight=np.ones(10)), ValueError, "not both"),
    (dict(sample_weight=np.ones(9)), ValueError, r"one weight per sample, shape \(10,\)"),
    (dict(sample_weight=np.ones((10, 3))), NotImplementedError, "temporal"),
    (dict(sample_weight=np.full(10, np.nan)), ValueError, "NaN"),
    (dict(sample_weight=np.array(["a"] * 10)), TypeError, "numeric"),
    (dict(class_weight=[1.0, 2.0]), TypeError, "dict"),
    (dict(class_weight={"a": 1.0}), ValueError, "integer class indices"),
    (dict(class_weight={0: "x"}), ValueError, "finite number"),
    (dict(shuffle="yes"), TypeError, "shuffle must be True or False"),
    (dict(verbose=3), ValueError, "verbose must be 0, 1, 2"),
    (dict(callbacks=[object()]), TypeError, "Callback instances"),
    (dict(callbacks=cbs.History()), TypeError, "list of"),
    (dict(initial_epoch=-1), ValueError, "initial_epoch must be >= 0"),
    (dict(batch_size=2.5), ValueError, "batch_size must be a positive int"),
])
def test_fit_arguments_are_validated(kwargs, exc, match):
    x, y = _data(10)
    with pytest.raises(exc, match=match):
        _clf().fit(x, y, **{"verbose": 0, **kwargs})


def test_one_loop_runs_fit_and_weighted_fit(monkeypatch):
    """Weighted or not, fit runs training.fit_loop (the one loop)."""
    calls = []
    original = fastconv.nn.training.fit_loop

    def counting(*args, **kwargs):
        calls.append(kwargs["sample_weight"] is not None)
        return original(*args, **kwargs)

    monkeypatch.setattr(fastconv.nn.model, "fit_loop", counting)
    x, y = _data(10)
    _clf().fit(x, y, verbose=0)
    _clf().fit(x, y, verbose=0, class_weight={1: 2.0}, validation_split=0.2)
    assert calls == [False, True]
