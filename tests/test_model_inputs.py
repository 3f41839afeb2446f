"""Bad and unusual input to the model API: a clear error naming the problem, never silent nonsense
(issue 18, items 4, 8 and 9).  Each test failed before the fix it guards."""
import numpy as np
import pytest

import fastconv
from fastconv import Sequential, layers, optimizers


def _cnn():
    model = Sequential([layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                        layers.Dense(10, activation="softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def _mlp(loss="sparse_categorical_crossentropy", last="softmax", units=3):
    model = Sequential([layers.Dense(8, activation="relu"), layers.Dense(units, activation=last)],
                       dtype="float64", seed=0)
    model.compile("adam", loss, ["accuracy"])
    return model


def test_channels_last_batch_is_refused_with_the_fix():
    x = np.random.default_rng(0).random((8, 32, 32, 3))
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        _cnn().fit(x, np.zeros(8, int), verbose=0)
    _cnn().fit(x.transpose(0, 3, 1, 2), np.zeros(8, int), verbose=0)   # the fix it names works


def test_categorical_crossentropy_with_integer_labels_is_refused():
    x = np.random.default_rng(0).random((20, 4))
    with pytest.raises(ValueError, match="one-hot targets of shape \\(20, 3\\).*sparse_categorical_crossentropy"):
        _mlp("categorical_crossentropy").fit(x, np.arange(20) % 3, verbose=0)


def test_sparse_crossentropy_with_one_hot_labels_is_refused():
    x = np.random.default_rng(0).random((20, 4))
    with pytest.raises(ValueError, match="one-hot.*categorical_crossentropy"):
        _mlp().fit(x, np.eye(3)[np.arange(20) % 3], verbose=0)


def test_probability_loss_on_linear_outputs_needs_from_logits():
    with pytest.raises(ValueError, match="from_logits=True"):
        _mlp("binary_crossentropy", last=None, units=1)
    model = Sequential([layers.Dense(8, activation="relu"), layers.Dense(1)], dtype="float64", seed=0)
    model.compile("adam", fastconv.nn.losses.BinaryCrossentropy(from_logits=True), ["accuracy"])
    x, y = fastconv.datasets.make_moons(100, noise=0.1, seed=0)
    model.fit(x, y, batch_size=100, epochs=300, verbose=0)
    assert model.evaluate(x, y)["accuracy"] > 0.8   # trained on logits, scored with threshold 0


@pytest.mark.parametrize("fit_kwargs,exc,match", [
    (dict(epochs=-1), ValueError, "epochs must be >= 0"),
    (dict(epochs=1.5), TypeError, "epochs must be an int"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive int"),
    (dict(validation_data=np.zeros(3)), ValueError, "validation_data must be a pair"),
])
def test_fit_arguments_are_checked(fit_kwargs, exc, match):
    x = np.random.default_rng(0).random((10, 4))
    with pytest.raises(exc, match=match):
        _mlp().fit(x, np.arange(10) % 3, verbose=0, **fit_kwargs)


def test_fit_on_no_samples_and_empty_models():
    with pytest.raises(ValueError, match="no samples"):
        _mlp().fit(np.zeros((0, 4)), np.zeros(0, int), verbose=0)
    empty = Sequential([])
    empty.compile("adam", "mse")
    with pytest.raises(ValueError, match="no layers"):
        empty.fit(np.zeros((4, 2)), np.zeros((4, 2)), verbose=0)


def test_dropout_rate_must_be_a_number():
    with pytest.raises(TypeError, match="rate must be a number"):
        layers.Dropout("a")
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        layers.Dropout(1.0)


def test_a_failed_compile_leaves_the_model_as_it_was():
    model = Sequential([layers.Dense(3, activation="softmax")], seed=0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.compile("adam", loss="hinge")
    assert model.optimizer is None and model.loss is None
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((4, 2)), np.zeros(4, int), verbose=0)


def test_train_on_batch_takes_what_fit_takes():
    model = _mlp()                                           # not built yet
    x = np.random.default_rng(0).random((6, 4))             # float64 input to a float64 model
    result = model.train_on_batch(x, np.arange(6) % 3)
    assert set(result) == {"loss", "accuracy"} and np.isfinite(result["loss"])
    model32 = Sequential([layers.Dense(3, activation="softmax")], seed=0)   # float32 model, float64 input
    model32.compile("sgd", "sparse_categorical_crossentropy")
    assert np.isfinite(model32.train_on_batch(x, np.arange(6) % 3)["loss"])


def test_learning_rate_is_checked_when_the_optimizer_is_made():
    with pytest.raises(TypeError, match="learning-rate schedules are not supported"):
        optimizers.Adam(learning_rate=lambda step: 1e-3)
    with pytest.raises(ValueError, match="learning_rate must be >= 0"):
        optimizers.SGD(learning_rate=-1)
    with pytest.raises(ValueError, match="beta_1 must be in"):
        optimizers.Adam(beta_1=1.0)


def test_summary_message_and_calling_the_model():
    model = _mlp()
    with pytest.raises(RuntimeError, match=r"model\.build\(input_shape\)"):
        model.summary()
    x = np.random.default_rng(0).random((5, 4))
    out = model(x)                                           # builds, then predicts
    assert out.shape == (5, 3) and np.allclose(out.sum(axis=1), 1)
    np.testing.assert_array_equal(out, model.predict(x))


def test_from_logits_survives_save_and_load(tmp_path):
    model = Sequential([layers.Dense(3)], dtype="float64", seed=0)
    model.compile("adam", fastconv.nn.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    x = np.random.default_rng(0).random((6, 4))
    model.fit(x, np.arange(6) % 3, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fastconv.load_model(tmp_path / "m.npz")
    assert loaded.loss.from_logits and loaded.evaluate(x, np.arange(6) % 3) == model.evaluate(x, np.arange(6) % 3)
