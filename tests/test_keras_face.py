"""fastconv.keras, the Keras 3 face: layouts, the Keras return forms and formats, errors, save/load,
reproducibility, the MNIST loader and the two Keras programs in examples/.

The oracle for layouts is a NumPy channels-last implementation written here (Keras's conventions: NHWC
activations, conv kernels (kh, kw, in, out), dense kernels (in, out), Flatten in (H, W, C) order).  Tests of
features whose core piece is on another branch carry a ``skipif`` that turns itself off once it is merged.
When Keras itself is installed, a test compares predictions with it.
"""
import json
import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import keras
from fastconv.keras import layers
from fastconv.nn import optimizers as core_optimizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS64 = np.finfo(np.float64).eps




# ------------------------------------------------------------------------------------ NumPy oracle
def np_conv(x, k, b, stride=1, pad=((0, 0), (0, 0))):
    """NHWC convolution with a (kh, kw, in, out) kernel (cross-correlation, as Keras)."""
    x = np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    kh, kw, _, f = k.shape
    n, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, ho, wo, f))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
            out += patch @ k[i, j]
    return out + b


def np_maxpool(x, p=2):
    n, h, w, c = x.shape
    ho, wo = h // p, w // p
    return x[:, :ho * p, :wo * p].reshape(n, ho, p, wo, p, c).max(axis=(2, 4))


def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def relu(x):
    return np.maximum(x, 0)


def small_convnet(data_format=None, dtype="float64", flatten_format=None):
    shape = (8, 7, 3) if data_format != "channels_first" else (3, 8, 7)
    return keras.Sequential([
        keras.Input(shape=shape, dtype=dtype),
        layers.Conv2D(4, 3, activation="relu", data_format=data_format),
        layers.MaxPooling2D(2, data_format=data_format),
        layers.Conv2D(5, (3, 3), padding="same", activation="relu", data_format=data_format),
        layers.Flatten(data_format=flatten_format),
        layers.Dense(6, activation="relu"),
        layers.Dense(3, activation="softmax"),
    ])


def keras_weights(rng, flat):
    return [rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(4), rng.standard_normal((3, 3, 4, 5)) * 0.5,
            rng.standard_normal(5), rng.standard_normal((flat, 6)) * 0.3, rng.standard_normal(6),
            rng.standard_normal((6, 3)), rng.standard_normal(3)]


def np_small_convnet(x_nhwc, w, flatten="hwc"):
    h = relu(np_conv(x_nhwc, w[0], w[1]))
    h = np_maxpool(h)
    h = relu(np_conv(h, w[2], w[3], pad=((1, 1), (1, 1))))
    if flatten == "chw":
        h = h.transpose(0, 3, 1, 2)
    h = h.reshape(len(h), -1)
    h = relu(h @ w[4] + w[5])
    return np_softmax(h @ w[6] + w[7])


# Bound for these float64 forward passes: each output is a few chained reductions of <= 36 O(1) terms; 1e3*eps
# is far above c*K*eps*sum|terms| for them and far below any layout mistake (which changes outputs by O(1)).
TOL = 1e3 * EPS64


# ------------------------------------------------------------------------------------------ layouts
def test_channels_last_weights_in_keras_layout_give_numpy_nhwc_predictions():
    rng = np.random.default_rng(0)
    model = small_convnet()
    w = keras_weights(rng, 3 * 2 * 5)
    model.set_weights(w)
    x = rng.random((9, 8, 7, 3))
    np.testing.assert_allclose(model.predict(x), np_small_convnet(x, w), rtol=0, atol=TOL)
    for got, want in zip(model.get_weights(), w):   # the round trip is exact
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert [lay.get_weights()[0].shape for lay in model.layers if lay.get_weights()] == \
        [(3, 3, 3, 4), (3, 3, 4, 5), (30, 6), (6, 3)]


def test_channels_first_model_matches_numpy_with_chw_flatten():
    rng = np.random.default_rng(1)
    model = small_convnet("channels_first")
    w = keras_weights(rng, 30)
    model.set_weights(w)
    x_nhwc = rng.random((5, 8, 7, 3))
    out = model.predict(x_nhwc.transpose(0, 3, 1, 2))
    # Keras's Flatten (data_format channels_last, its default) flattens an NCHW tensor in (C, H, W) order
    np.testing.assert_allclose(out, np_small_convnet(x_nhwc, w, flatten="chw"), rtol=0, atol=TOL)


def test_flatten_channels_first_in_a_channels_first_model_flattens_hwc():
    rng = np.random.default_rng(2)
    model = small_convnet("channels_first", flatten_format="channels_first")
    w = keras_weights(rng, 30)
    model.set_weights(w)
    x_nhwc = rng.random((4, 8, 7, 3))
    np.testing.assert_allclose(model.predict(x_nhwc.transpose(0, 3, 1, 2)), np_small_convnet(x_nhwc, w),
                               rtol=0, atol=TOL)


def test_image_output_and_flattened_output_are_in_keras_layout():
    rng = np.random.default_rng(3)
    conv = keras.Sequential([keras.Input((6, 5, 2), dtype="float64"), layers.Conv2D(3, 2)])
    k, b = rng.standard_normal((2, 2, 2, 3)), rng.standard_normal(3)
    conv.set_weights([k, b])
    x = rng.random((4, 6, 5, 2))
    out = conv.predict(x)
    assert out.shape == (4, 5, 4, 3) and conv.output_shape == (None, 5, 4, 3)
    np.testing.assert_allclose(out, np_conv(x, k, b), rtol=0, atol=TOL)
    flat = keras.Sequential([keras.Input((6, 5, 2), dtype="float64"), layers.Conv2D(3, 2), layers.Flatten()])
    flat.set_weights([k, b])
    np.testing.assert_allclose(flat.predict(x), np_conv(x, k, b).reshape(4, -1), rtol=0, atol=TOL)


def test_targets_of_an_image_output_are_converted_too():
    rng = np.random.default_rng(4)
    model = keras.Sequential([keras.Input((6, 5, 2), dtype="float64"), layers.Conv2D(3, 2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.random((4, 6, 5, 2)), rng.random((4, 5, 4, 3))
    expected = np.mean((model.predict(x) - y) ** 2)
    assert model.test_on_batch(x, y) == pytest.approx(expected, rel=1e-12)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-12)
    flat = keras.Sequential([keras.Input((6, 5, 2), dtype="float64"), layers.Conv2D(3, 2), layers.Flatten()])
    flat.compile(optimizer="sgd", loss="mse")
    yf = y.reshape(4, -1)
    assert flat.evaluate(x, yf, verbose=0) == pytest.approx(np.mean((flat.predict(x) - yf) ** 2), rel=1e-12)


def test_dense_model_and_input_dim():
    rng = np.random.default_rng(5)
    model = keras.Sequential([layers.Dense(4, activation="tanh", input_dim=7, dtype="float64"),
                              layers.Dense(2, activation="sigmoid")])
    w = [rng.standard_normal((7, 4)), rng.standard_normal(4), rng.standard_normal((4, 2)), rng.standard_normal(2)]
    model.set_weights(w)
    x = rng.standard_normal((6, 7))
    ref = 1 / (1 + np.exp(-(np.tanh(x @ w[0] + w[1]) @ w[2] + w[3])))
    np.testing.assert_allclose(model.predict(x), ref, rtol=0, atol=TOL)
    assert model.input_shape == (None, 7) and model.count_params() == 7 * 4 + 4 + 4 * 2 + 2


def test_one_boundary_conversion_per_call(monkeypatch):
    model = small_convnet(dtype="float32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    calls = []
    original = type(model)._core_x

    def counting(self, x):
        calls.append(np.shape(x))
        return original(self, x)

    monkeypatch.setattr(type(model), "_core_x", counting)
    x = np.random.default_rng(0).random((20, 8, 7, 3)).astype("float32")
    model.fit(x, np.arange(20) % 3, epochs=2, batch_size=4, validation_split=0.25, verbose=0)
    assert calls == [(20, 8, 7, 3)]   # training and validation data share one transposed copy
    xc = original(model, x)
    assert xc.flags.c_contiguous and xc.shape == (20, 3, 8, 7) and xc.dtype == np.float32
    np.testing.assert_array_equal(xc, x.transpose(0, 3, 1, 2))


def test_mixed_data_formats_are_not_implemented():
    with pytest.raises(NotImplementedError, match="data_format"):
        keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(2, 3, data_format="channels_last"),
                          layers.MaxPooling2D(2, data_format="channels_first")])


def test_add_pop_and_lazy_build_keep_weights():
    rng = np.random.default_rng(6)
    model = keras.Sequential()
    model.add(keras.Input((5,), dtype="float64"))
    model.add(layers.Dense(3, activation="relu"))
    w = [rng.standard_normal((5, 3)), rng.standard_normal(3)]
    model.set_weights(w)
    model.add(layers.Dense(2))
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], w[0])
    assert [lay.name for lay in model.layers][-1].startswith("dense") and model.output_shape == (None, 2)
    popped = model.pop()
    assert isinstance(popped, layers.Dense) and model.output_shape == (None, 3)
    np.testing.assert_array_equal(model.get_weights()[0], w[0])
    lazy = keras.Sequential([layers.Flatten(), layers.Dense(4)])
    assert not lazy.built and lazy.get_weights() == []
    out = lazy.predict(np.ones((2, 3, 3, 1), "float32"))
    assert out.shape == (2, 4) and lazy.built and lazy.input_shape == (None, 3, 3, 1)
    built = keras.Sequential([layers.Dense(2)])
    built.build((None, 6))
    assert built.get_weights()[0].shape == (6, 2)


# ------------------------------------------------------------------------------------------ summary
MNIST_SUMMARY_76 = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ conv2d (Conv2D)                 │ (None, 26, 26, 32)     │           320 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ max_pooling2d (MaxPooling2D)    │ (None, 13, 13, 32)     │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ conv2d_1 (Conv2D)               │ (None, 11, 11, 64)     │        18,496 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ max_pooling2d_1 (MaxPooling2D)  │ (None, 5, 5, 64)       │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ flatten (Flatten)               │ (None, 1600)           │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dropout (Dropout)               │ (None, 1600)           │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 10)             │        16,010 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 34,826 (136.04 KB)
 Trainable params: 34,826 (136.04 KB)
 Non-trainable params: 0 (0.00 B)"""


def mnist_convnet():
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)), layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])


def test_summary_is_keras_3s_table(monkeypatch):
    keras.backend.clear_session()
    monkeypatch.setenv("COLUMNS", "80")   # a pipe or an 80-column terminal: Keras draws 76 columns
    model = mnist_convnet()
    lines = []
    model.summary(print_fn=lines.append)
    assert lines == [MNIST_SUMMARY_76]
    monkeypatch.setenv("COLUMNS", "120")
    wide = []
    model.summary(line_length=88, print_fn=wide.append)
    table = wide[0].splitlines()[1:-3]
    assert {len(line) for line in table} == {88}
    monkeypatch.setenv("COLUMNS", "80")
    cropped = []
    model.summary(line_length=100, print_fn=cropped.append)   # rich crops lines at its console's 80 columns
    assert max(len(line) for line in cropped[0].splitlines()) == 80
    named = keras.Sequential([keras.Input((3,)), layers.Dense(2, name="a_rather_long_dense_layer")])
    wrapped = []
    named.summary(print_fn=wrapped.append)   # rich wraps a cell at spaces
    assert "│ a_rather_long_dense_layer       │ (None, 2)              │             8 │\n" \
           "│ (Dense)                         │                        │               │" in wrapped[0]
    # rich shrinks the columns 39/31/18 (+2 padding each) to fit 88 - 4 borders: cells of 38, 29 and 17
    assert table[1] == ("┃ " + "Layer (type)".ljust(36) + " ┃ " + "Output Shape".ljust(27) + " ┃ "
                        + "Param #".rjust(15) + " ┃")


def test_summary_after_training_counts_optimizer_variables_and_unbuilt_layers(capsys):
    keras.backend.clear_session()
    model = keras.Sequential([layers.Dense(3, input_dim=4), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(np.ones((2, 4), "float32"), np.ones(2, "float32"))
    model.summary()
    out = capsys.readouterr().out
    params = 4 * 3 + 3 + 3 + 1
    assert f" Total params: {3 * params + 2:,}" in out and f" Optimizer params: {2 * params + 2:,} (" in out
    lazy = keras.Sequential([layers.Dense(3)], name="lazy")
    lazy.summary()
    out = capsys.readouterr().out
    assert 'Model: "lazy"' in out and "│ ?" in out and "0 (unbuilt) │" in out


def test_automatic_names_follow_keras():
    keras.backend.clear_session()
    names = [layers.Conv2D(1, 1).name, layers.Conv2D(1, 1).name, layers.MaxPool2D().name, layers.ReLU().name,
             layers.BatchNormalization().name, layers.GlobalAveragePooling2D().name, keras.Sequential().name]
    assert names == ["conv2d", "conv2d_1", "max_pooling2d", "re_lu", "batch_normalization",
                     "global_average_pooling2d", "sequential"]
    with pytest.raises(ValueError, match="unique names"):
        keras.Sequential([layers.Dense(1, name="a"), layers.Dense(1, name="a")])


# ------------------------------------------------------------------------------- evaluate and friends
def classifier(metrics):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(8, activation="relu"),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=metrics)
    return model


def test_evaluate_return_forms():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((30, 4)).astype("float32"), rng.integers(0, 3, 30)
    plain = classifier(None)
    loss = plain.evaluate(x, y, verbose=0)
    assert isinstance(loss, float)
    assert plain.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss}
    model = classifier(["accuracy"])
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, list) and len(result) == 2 and result[0] == pytest.approx(loss)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "accuracy"] and [logs["loss"], logs["accuracy"]] == result
    acc = np.mean(model.predict(x).argmax(1) == y)
    assert result[1] == pytest.approx(acc)
    assert model.metrics_names == ["loss", "accuracy"]
    test = model.test_on_batch(x, y)
    assert test == pytest.approx(result)
    assert set(model.test_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}
    train = model.train_on_batch(x, y)
    assert isinstance(train, list) and train[0] == pytest.approx(result[0], rel=1e-5)
    assert isinstance(plain.train_on_batch(x, y), float)


def test_fit_returns_a_history_with_keras_keys():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((40, 4)).astype("float32"), rng.integers(0, 3, 40)
    model = classifier(["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=8, validation_data=(x[:10], y[:10]), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == [0, 1, 2] and history.model is model and model.history is history
    assert len(model.fit(x, y, epochs=3, initial_epoch=1, verbose=0).history["loss"]) == 2


def test_validation_split_takes_the_last_fraction_before_shuffling():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((40, 4)).astype("float32"), rng.integers(0, 3, 40)
    split = int(math.floor(40 * (1 - 0.25)))
    with_split = classifier(["accuracy"])
    history = with_split.fit(x, y, epochs=1, batch_size=8, validation_split=0.25, shuffle=True, verbose=0)
    alone = classifier(["accuracy"])   # the same seed: the same initial weights and shuffles
    alone.fit(x[:split], y[:split], epochs=1, batch_size=8, shuffle=True, verbose=0)
    for a, b in zip(with_split.get_weights(), alone.get_weights()):
        np.testing.assert_array_equal(a, b)
    val = with_split.evaluate(x[split:], y[split:], verbose=0, return_dict=True)
    assert history.history["val_loss"][0] == pytest.approx(val["loss"], rel=1e-6)
    assert history.history["val_accuracy"][0] == pytest.approx(val["accuracy"])
    with pytest.raises(ValueError, match="not sufficient to split"):
        classifier(None).fit(x[:1], y[:1], validation_split=0.1, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        classifier(None).fit(x, y, validation_split=1.5, verbose=0)


def test_user_callbacks_see_the_face_model():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((16, 4)).astype("float32"), rng.integers(0, 3, 16)
    model = classifier(None)
    seen = []

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((self.model, epoch, sorted(logs)))
            self.model.stop_training = True

    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[Stop()])
    assert len(history.history["loss"]) == 1 and seen == [(model, 0, ["loss"])]


# ------------------------------------------------------------------------------------ optimizers
def test_keras_optimizer_defaults():
    adam = keras.optimizers.get("adam")
    assert isinstance(adam, core_optimizers.Adam)
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    assert getattr(adam, "convention", "torch") == "keras" or adam.epsilon_hat   # Keras's epsilon-hat form
    sgd = keras.optimizers.SGD()
    assert sgd.learning_rate == 0.01 and sgd.momentum == 0.0
    with pytest.raises(ValueError, match="adam, sgd, rmsprop"):
        keras.optimizers.get("adamm")
    with pytest.raises(NotImplementedError, match="use_ema"):
        keras.optimizers.Adam(use_ema=True)


def test_keras_adam_step_matches_the_epsilon_hat_formula():
    rng = np.random.default_rng(11)
    model = keras.Sequential([keras.Input((3,), dtype="float64"), layers.Dense(1)])
    w0, b0 = rng.standard_normal((3, 1)), rng.standard_normal(1)
    model.set_weights([w0, b0])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.1), loss="mse")
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 1))
    model.train_on_batch(x, y)
    g = 2 * (x @ w0 + b0 - y) / 5                       # dL/d(out) of the mean squared error
    gw, gb = x.T @ g, g.sum(0)
    for p, grad, got in ((w0, gw, model.get_weights()[0]), (b0, gb, model.get_weights()[1])):
        m, v = 0.1 * grad, 0.001 * grad ** 2
        alpha = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
        np.testing.assert_allclose(got, p - alpha * m / (np.sqrt(v) + 1e-7), rtol=1e-12, atol=1e-12)


def test_keras_sgd_momentum_carries_the_learning_rate():
    rng = np.random.default_rng(12)
    model = keras.Sequential([keras.Input((2,), dtype="float64"), layers.Dense(1, use_bias=False)])
    w0 = rng.standard_normal((2, 1))
    model.set_weights([w0])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    x, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))
    w, v = w0.copy(), np.zeros_like(w0)
    for _ in range(3):
        model.train_on_batch(x, y)
        g = x.T @ (2 * (x @ w - y) / 4)
        v = 0.9 * v - 0.1 * g
        w = w + v
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-12, atol=1e-12)


def test_other_keras_optimizers_have_keras_defaults():
    rms = keras.optimizers.get("rmsprop")
    assert (rms.learning_rate, rms.rho, rms.epsilon) == (0.001, 0.9, 1e-7)
    ada = keras.optimizers.Adagrad()
    assert (ada.learning_rate, ada.initial_accumulator_value, ada.epsilon) == (0.001, 0.1, 1e-7)
    assert keras.optimizers.AdamW().weight_decay == 0.004
    assert keras.optimizers.Nadam().epsilon == 1e-7
    model = classifier(None)
    model.compile(loss="sparse_categorical_crossentropy")   # Keras's default optimizer is rmsprop
    assert type(model.optimizer).__name__ == "RMSprop"


def test_clipping_arguments_reach_the_core():
    opt = keras.optimizers.Adam(clipnorm=1.0)
    assert opt.clipnorm == 1.0
    with pytest.raises(ValueError, match="Only one of"):
        keras.optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


def test_learning_rate_schedule_as_learning_rate():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    model = classifier(None)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="sparse_categorical_crossentropy")
    model.train_on_batch(np.ones((2, 4), "float32"), np.array([0, 1]))


# --------------------------------------------------------------------------------------- pieces
def test_initializers_follow_keras_definitions():
    he = keras.initializers.get("he_normal")
    assert he.distribution == "truncated_normal" and he.scale == 2.0 and he.mode == "fan_in"
    w = he((400, 300), rng=0)
    std = math.sqrt(2 / 300)
    assert np.abs(w).max() <= 2 * std / 0.87962566103423978
    assert abs(w.std() / std - 1) < 0.02
    assert keras.initializers.get("GlorotUniform").distribution == "uniform"
    assert keras.initializers.VarianceScaling().distribution == "truncated_normal"
    with pytest.raises(ValueError, match="glorot_uniform"):
        keras.initializers.get("he_normall")
    a = keras.Sequential([keras.Input((4,)), layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(3))])
    b = keras.Sequential([keras.Input((4,)), layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(3))])
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    calls = []

    def custom(shape, dtype=None):
        calls.append(shape)
        return np.full(shape, 0.5)

    c = keras.Sequential([keras.Input((3, 3, 2)), layers.Conv2D(4, 2, kernel_initializer=custom)])
    assert calls == [(2, 2, 2, 4)] and np.all(c.get_weights()[0] == 0.5)


def test_activations_by_name_and_as_functions():
    x = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(keras.activations.relu(x), [[0.0, 0.0, 2.0]])
    assert keras.activations.softmax(x).sum() == pytest.approx(1.0)
    assert keras.activations.get("relu") is keras.activations.relu
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2, activation=keras.activations.tanh)])
    assert model.layers[0]._core[0].activation == "tanh"
    with pytest.raises(ValueError, match="relu"):
        layers.Dense(2, activation="relux")
    with pytest.raises(NotImplementedError, match="custom activation"):
        layers.Dense(2, activation=lambda t: t)


def test_parametrised_activations_use_keras_defaults():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((6, 5))
    for layer, ref in ((layers.LeakyReLU(), np.where(x > 0, x, 0.3 * x)),
                       (layers.ELU(), np.where(x > 0, x, np.expm1(x))),
                       (layers.Activation("leaky_relu"), np.where(x > 0, x, 0.2 * x))):
        model = keras.Sequential([keras.Input((5,), dtype="float64"), layer])
        np.testing.assert_allclose(model.predict(x), ref, rtol=4 * EPS64, atol=0)
    gelu = keras.Sequential([keras.Input((5,), dtype="float64"), layers.Activation("gelu")])
    assert gelu.layers[0]._core[0].activation == "gelu"


def test_losses_and_metrics_by_name_and_object():
    assert keras.losses.get("mean_squared_error").name == "mse"
    assert keras.losses.get(keras.losses.mean_squared_error).name == "mse"
    assert keras.losses.SparseCategoricalCrossentropy(from_logits=True).from_logits
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        keras.losses.get("msee")
    with pytest.raises(NotImplementedError, match="label_smoothing"):
        keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    with pytest.raises(NotImplementedError, match="custom loss"):
        keras.losses.get(lambda a, b: a)
    assert keras.metrics.resolve("accuracy") == ("accuracy", "accuracy")
    with pytest.raises(ValueError, match="sparse_categorical_accuracy"):
        keras.metrics.resolve("acuracy")


def test_several_metrics_are_logged_under_their_keras_names():
    rng = np.random.default_rng(14)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae", keras.metrics.MeanSquaredError()])
    x, y = rng.standard_normal((20, 3)).astype("float32"), rng.standard_normal(20).astype("float32")
    history = model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "mae", "mean_squared_error", "val_loss", "val_mae",
                                    "val_mean_squared_error"}
    loss, mae, mse = model.evaluate(x, y, verbose=0)
    pred = model.predict(x)[:, 0]
    assert mae == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-5)
    assert mse == pytest.approx(loss, rel=1e-6)


def test_metric_objects_keep_their_names_and_arguments():
    rng = np.random.default_rng(25)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.7, name="acc70"), "accuracy"])
    x, y = rng.standard_normal((20, 3)).astype("float32"), (rng.random(20) > 0.5).astype("float32")
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "acc70", "accuracy"]
    p = model.predict(x)[:, 0]
    assert logs["acc70"] == pytest.approx(np.mean((p > 0.7) == (y > 0.5)))
    assert logs["accuracy"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))


def test_sample_and_class_weights_pass_to_the_core():
    rng = np.random.default_rng(15)
    x, y = rng.standard_normal((20, 4)).astype("float32"), rng.integers(0, 3, 20)
    model = classifier(None)
    model.fit(x, y, sample_weight=np.ones(20), epochs=1, verbose=0, validation_split=0.2)
    model.fit(x, y, class_weight={0: 1.0, 1: 2.0, 2: 1.0}, epochs=1, verbose=0)


def test_keras_callbacks_from_the_core(tmp_path):
    rng = np.random.default_rng(16)
    x, y = rng.standard_normal((20, 4)).astype("float32"), rng.integers(0, 3, 20)
    model = classifier(None)
    path = str(tmp_path / "best.keras")
    model.fit(x, y, epochs=3, verbose=0, validation_split=0.2,
              callbacks=[keras.callbacks.EarlyStopping(patience=1, restore_best_weights=True),
                         keras.callbacks.ModelCheckpoint(path, save_best_only=True)])
    assert isinstance(keras.models.load_model(path), keras.Sequential)


def test_utils_to_categorical():
    out = keras.utils.to_categorical(np.array([[0], [2], [1]]))
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2, 1]])
    assert out.dtype == np.float64 and keras.utils.to_categorical([1, 0], 4).shape == (2, 4)


# ------------------------------------------------------------------------ layers of pending core pieces
def test_batch_normalization_weights_in_keras_order_and_inference():
    rng = np.random.default_rng(17)
    model = keras.Sequential([keras.Input((4, 4, 3), dtype="float64"), layers.BatchNormalization(),
                              layers.Flatten(), layers.Dense(5), layers.BatchNormalization()])
    bn = model.layers[0]
    assert [w.shape for w in bn.get_weights()] == [(3,)] * 4 and bn.momentum == 0.99 and bn.epsilon == 1e-3
    gamma, beta, mean, var = (rng.random(3) + 0.5 for _ in range(4))
    bn.set_weights([gamma, beta, mean, var])
    dense_w = [rng.standard_normal((48, 5)), rng.standard_normal(5)]
    model.layers[2].set_weights(dense_w)
    g2, b2, m2, v2 = (rng.random(5) + 0.5 for _ in range(4))
    model.layers[3].set_weights([g2, b2, m2, v2])
    x = rng.standard_normal((3, 4, 4, 3))
    h = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    h = h.reshape(3, -1) @ dense_w[0] + dense_w[1]
    np.testing.assert_allclose(model.predict(x), (h - m2) / np.sqrt(v2 + 1e-3) * g2 + b2, rtol=0, atol=TOL)
    lines = []
    model.summary(print_fn=lines.append)
    assert " Non-trainable params: 16 (128.00 B)" in lines[0]
    with pytest.raises(NotImplementedError, match="axis"):
        keras.Sequential([keras.Input((4, 4, 3)), layers.BatchNormalization(axis=1)])


def test_average_pooling_matches_numpy():
    x = np.random.default_rng(18).random((2, 6, 6, 3))
    model = keras.Sequential([keras.Input((6, 6, 3), dtype="float64"), layers.AveragePooling2D(2)])
    ref = x.reshape(2, 3, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(model.predict(x), ref, rtol=0, atol=TOL)


def test_global_pooling_gives_channels():
    x = np.random.default_rng(19).random((2, 5, 4, 3))
    avg = keras.Sequential([keras.Input((5, 4, 3), dtype="float64"), layers.GlobalAveragePooling2D()])
    mx = keras.Sequential([keras.Input((5, 4, 3), dtype="float64"), layers.GlobalMaxPooling2D()])
    np.testing.assert_allclose(avg.predict(x), x.mean(axis=(1, 2)), rtol=0, atol=TOL)
    np.testing.assert_array_equal(mx.predict(x), x.max(axis=(1, 2)))


def test_same_padding_at_stride_2_and_dilation():
    rng = np.random.default_rng(20)
    model = keras.Sequential([keras.Input((7, 6, 2), dtype="float64"), layers.Conv2D(3, 3, strides=2,
                                                                                    padding="same")])
    k, b = rng.standard_normal((3, 3, 2, 3)), rng.standard_normal(3)
    model.set_weights([k, b])
    x = rng.random((2, 7, 6, 2))
    # TensorFlow's rule: total = max((ceil(H/s)-1)*s + k - H, 0), top = total // 2, the rest at the bottom
    ref = np_conv(x, k, b, stride=2, pad=((1, 1), (0, 1)))
    np.testing.assert_allclose(model.predict(x), ref, rtol=0, atol=TOL)
    dil = keras.Sequential([keras.Input((7, 6, 2), dtype="float64"), layers.Conv2D(3, 2, dilation_rate=2)])
    assert dil.output_shape == (None, 5, 4, 3)


def test_max_pooling_same_padding():
    model = keras.Sequential([keras.Input((5, 5, 1)), layers.MaxPooling2D(2, padding="same")])
    assert model.output_shape == (None, 3, 3, 1)


def test_reshape_in_keras_order():
    x = np.arange(2 * 12, dtype="float64").reshape(2, 12)
    model = keras.Sequential([keras.Input((12,), dtype="float64"), layers.Reshape((3, 4, 1))])
    np.testing.assert_array_equal(model.predict(x), x.reshape(2, 3, 4, 1))
    with pytest.raises(NotImplementedError, match="transpose"):
        keras.Sequential([keras.Input((12,)), layers.Reshape((2, 2, 3))])


# ------------------------------------------------------------------------------------------- errors
def test_a_4d_input_to_a_dense_model_says_so():
    model = keras.Sequential([layers.Dense(4, input_dim=7), layers.Dense(1)])
    with pytest.raises(ValueError, match=r'layer "dense.*expected shape=\(None, 7\), found shape=\(3, 28, 28, 1\)'):
        model.predict(np.zeros((3, 28, 28, 1)))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 7"):
        model.predict(np.zeros((3, 5)))
    with pytest.raises(NotImplementedError, match="add a Flatten"):
        keras.Sequential([layers.Dense(4)]).predict(np.zeros((3, 28, 28, 1)))


def test_a_batch_shape_given_as_input_shape_says_so():
    with pytest.raises(ValueError, match=r"without the batch dimension.*input_shape=\(28, 28, 1\)"):
        keras.Sequential([layers.Conv2D(8, 3, input_shape=(32, 28, 28, 1))])
    with pytest.raises(ValueError, match=r"without the batch dimension.*input_shape=\(7,\)"):
        keras.Sequential([layers.Dense(4, input_shape=(None, 7))])


@pytest.mark.parametrize("make, word", [
    (lambda: layers.Dense(3, kernel_regularizer="l2"), "kernel_regularizer"),
    (lambda: layers.Conv2D(4, 3, groups=2), "groups"),
    (lambda: layers.Conv2D(4, 3, padding="causal"), "padding"),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), "keepdims"),
    (lambda: layers.Dropout(0.5, noise_shape=(1, 3)), "noise_shape"),
    (lambda: layers.ReLU(threshold=1.0), "threshold"),
    (lambda: layers.Dense(3, trainable=False), "trainable"),
    (lambda: layers.Softmax(axis=1), "axis"),
    (lambda: layers.LSTM(3), "LSTM"),
    (lambda: keras.Model(), "keras.Model"),
    (lambda: keras.Sequential([keras.Input((2,)), type("Mine", (layers.Layer,), {})()]), "custom layers"),
    (lambda: keras.datasets.cifar10, "cifar10"),
    (lambda: keras.Sequential([keras.Input((4, 4, 2)), layers.Activation("softmax")]), "softmax"),
    (lambda: classifier(None).compile(optimizer="adam", loss="mse", loss_weights=[1.0]), "loss_weights"),
    (lambda: classifier(None).fit(np.ones((4, 4)), np.zeros(4), steps_per_epoch=2), "steps_per_epoch"),
])
def test_unsupported_keras_features_raise_not_implemented(make, word):
    with pytest.raises(NotImplementedError, match=word):
        make()


def test_bad_arguments_are_keras_style_errors():
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense"):
        layers.Dense(3, foo=1)
    with pytest.raises(ValueError, match="must call `compile"):
        keras.Sequential([keras.Input((2,)), layers.Dense(1)]).fit(np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="set_weights.*expecting 2 weights"):
        keras.Sequential([keras.Input((2,)), layers.Dense(1)]).set_weights([np.ones((2, 1))])
    with pytest.raises(ValueError, match=r"weight shape \(2, 1\) is not compatible with provided weight shape"):
        keras.Sequential([keras.Input((2,)), layers.Dense(1)]).layers[0].set_weights([np.ones((1, 2)), np.ones(1)])
    with pytest.raises(ValueError, match="Data cardinality"):
        classifier(None).fit(np.ones((4, 4), "float32"), np.zeros(3), verbose=0)


# ---------------------------------------------------------------------------------------- save/load
def test_save_and_load_model_round_trip(tmp_path):
    rng = np.random.default_rng(21)
    x, y = rng.random((24, 8, 7, 3)).astype("float32"), rng.integers(0, 3, 24)
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((8, 7, 3)), layers.Conv2D(4, 3, activation="relu"),
                              layers.MaxPooling2D(), layers.Flatten(), layers.Dropout(0.3),
                              layers.Dense(3, activation="softmax")], name="net")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "net.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras.Sequential) and loaded.name == "net"
    assert [lay.name for lay in loaded.layers] == [lay.name for lay in model.layers]
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)   # optimizer state, shuffling and dropout RNGs restored
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    fresh = keras.models.clone_model(model)
    assert [w.shape for w in fresh.get_weights()] == [w.shape for w in model.get_weights()]
    assert not np.array_equal(fresh.get_weights()[0], model.get_weights()[0])
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.predict(x), keras.models.load_model(path).predict(x))
    uncompiled = keras.models.load_model(path, compile=False)
    assert uncompiled.optimizer is None
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)


def test_load_model_refuses_a_core_model_file(tmp_path):
    from fastconv import Sequential
    from fastconv import layers as core

    core_model_ = Sequential([core.Dense(2)], seed=0)
    core_model_.build((3,))
    core_model_.save(tmp_path / "core.npz")
    with pytest.raises(ValueError, match="core API"):
        keras.models.load_model(tmp_path / "core.npz")


def test_set_random_seed_makes_a_program_reproducible():
    rng = np.random.default_rng(22)
    x, y = rng.standard_normal((30, 4)).astype("float32"), rng.integers(0, 3, 30)

    def program(seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((4,)), layers.Dense(8, activation="relu"), layers.Dropout(0.2),
                                  layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
        return model.get_weights(), history.history["loss"], np.random.random()

    a, b, c = program(3), program(3), program(4)
    assert a[1] == b[1] and a[2] == b[2] and a[1] != c[1]
    for u, v in zip(a[0], b[0]):
        np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------------------------------------ datasets
def _fake_mnist(path, n_train=6, n_test=4):
    rng = np.random.default_rng(23)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def test_load_data_reads_keras_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    arrays = _fake_mnist(str(tmp_path / ".keras" / "datasets" / "mnist.npz"))
    (x, y), (xt, yt) = keras.datasets.mnist.load_data()
    assert capsys.readouterr().out == ""
    for got, key in ((x, "x_train"), (y, "y_train"), (xt, "x_test"), (yt, "y_test")):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[key])


def test_load_data_validates_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    path = tmp_path / "kh" / "datasets" / "mnist.npz"
    os.makedirs(path.parent)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x_train.npy", b"not an array")
    with pytest.raises(ValueError, match="mnist.npz"):
        keras.datasets.mnist.load_data()


def test_load_data_falls_back_to_the_embedded_subset_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    (x, y), (xt, yt) = keras.datasets.mnist.load_data()
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "embedded" in out and "mnist.npz" in out
    assert x.shape == (4000, 28, 28) and xt.shape == (1000, 28, 28)
    assert x.dtype == y.dtype == xt.dtype == yt.dtype == np.uint8 and y.max() == 9


# ------------------------------------------------------------------------------------------ examples
def _run_example(name, *args, env=None, timeout=600):
    # the fastconv these tests import (a build in place, or the installed package: a plain checkout's
    # fastconv/ has no compiled modules)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    environment = dict(os.environ, PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""),
                       **(env or {}))
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args], capture_output=True,
                          text=True, timeout=timeout, check=True, env=environment).stdout


def test_keras_mnist_convnet_example_runs_and_learns(tmp_path):
    out = _run_example("keras_mnist_convnet.py", env={"FASTCONV_EXAMPLE_EPOCHS": "1", "HOME": str(tmp_path),
                                                      "COLUMNS": "80"})
    assert "embedded MNIST subset" in out and "x_train shape: (4000, 28, 28, 1)" in out
    assert MNIST_SUMMARY_76 in out
    accuracy = float(out.split("Test accuracy:")[1])
    assert accuracy > 0.6, out   # one epoch on 3,600 images: far above chance (0.1)


def test_seed002_example_runs_and_beats_the_mean():
    out = _run_example("seed002_keras.py", "30")
    mse = float(out.split("test mse:")[1].split()[0])
    baseline = float(out.split("mse")[-1].split()[0])
    assert mse < baseline, out


# ------------------------------------------------------------------------------------- real Keras
def test_predictions_match_real_keras():
    real = pytest.importorskip("keras")
    rng = np.random.default_rng(24)
    theirs = real.Sequential([real.Input((8, 7, 3)), real.layers.Conv2D(4, 3, activation="relu"),
                              real.layers.MaxPooling2D(2), real.layers.Conv2D(5, 3, padding="same"),
                              real.layers.Flatten(), real.layers.Dense(3, activation="softmax")])
    ours = keras.Sequential([keras.Input((8, 7, 3)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2),
                             layers.Conv2D(5, 3, padding="same"), layers.Flatten(),
                             layers.Dense(3, activation="softmax")])
    ours.set_weights(theirs.get_weights())
    x = rng.random((6, 8, 7, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=0,
                               atol=64 * np.finfo(np.float32).eps)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)


EPS32 = float(np.finfo(np.float32).eps)


def test_a_network_of_every_layer_matches_real_keras():
    real = pytest.importorskip("keras")
    rng = np.random.default_rng(26)

    def net(k, lay):
        return k.Sequential([
            k.Input((9, 8, 3)), lay.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
            lay.BatchNormalization(), lay.Conv2D(5, 2, dilation_rate=2, activation="elu"),
            lay.AveragePooling2D(2, padding="same"), lay.LeakyReLU(), lay.Flatten(), lay.Dense(6, activation="gelu"),
            lay.BatchNormalization(), lay.Dense(3, activation="softmax")])

    theirs, ours = net(real, real.layers), net(keras, layers)
    weights = [rng.standard_normal(w.shape).astype("float32") * 0.5 for w in theirs.get_weights()]
    weights = [np.abs(w) + 0.5 if "variance" in v.path else w for w, v in zip(weights, theirs.weights)]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    x = rng.random((6, 9, 8, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=0, atol=64 * EPS32)


@pytest.mark.parametrize("name, make", [
    ("sgd", lambda k: k.optimizers.SGD(0.1, momentum=0.9)), ("adam", lambda k: k.optimizers.Adam(0.01)),
    ("rmsprop", lambda k: k.optimizers.RMSprop(0.01)), ("adagrad", lambda k: k.optimizers.Adagrad(0.1)),
    ("nadam", lambda k: k.optimizers.Nadam(0.01)), ("adamw", lambda k: k.optimizers.AdamW(0.01))])
def test_training_matches_real_keras(name, make):
    real = pytest.importorskip("keras")
    rng = np.random.default_rng(27)
    theirs, ours = (k.Sequential([k.Input((4,)), k.layers.Dense(5, activation="tanh"), k.layers.Dense(2)])
                    for k in (real, keras))
    weights = [rng.standard_normal(w.shape).astype("float32") for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    theirs.compile(optimizer=make(real), loss="mse")
    ours.compile(optimizer=make(keras), loss="mse")
    x, y = rng.standard_normal((16, 4)).astype("float32"), rng.standard_normal((16, 2)).astype("float32")
    h_theirs = theirs.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    h_ours = ours.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    # 8 float32 steps, each computed in a different order by each framework: a few eps of O(1) weights per step
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=8 * 64 * EPS32)
    assert h_ours.history["loss"] == pytest.approx(h_theirs.history["loss"], rel=1e-5)


def test_summary_matches_real_keras(monkeypatch):
    real = pytest.importorskip("keras")
    monkeypatch.setenv("COLUMNS", "80")
    real.backend.clear_session()
    keras.backend.clear_session()
    theirs, ours = [], []
    real.Sequential([real.Input((8, 8, 1)), real.layers.Conv2D(4, 3), real.layers.Flatten(),
                     real.layers.Dense(2, name="a_rather_long_dense_layer")]).summary(print_fn=theirs.append)
    keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3), layers.Flatten(),
                      layers.Dense(2, name="a_rather_long_dense_layer")]).summary(print_fn=ours.append)
    assert ours[0] == theirs[0].rstrip("\n")


def test_face_config_is_json():
    model = small_convnet()
    json.dumps(model.get_config())


# --------------------------------------------------------------------------------------------- bench
@pytest.fixture(scope="module")
def bench_models():
    from conftest import load_bench

    module = load_bench("models", "bench_models_face")
    module.SETTLE_S = 0.0
    return module


def test_bench_face_twin_is_the_core_network(bench_models):
    setup = bench_models.SETUPS["keras_face"]
    x, y, xt, yt = bench_models.load_data(setup["data"], setup["dtype"], 8)
    core = bench_models._fastconv_model(setup, x, seed=0)
    face = bench_models.keras_face_twin(core)
    np.testing.assert_array_equal(face.predict(xt[:16].transpose(0, 2, 3, 1)), core.predict(xt[:16]))


def test_bench_keras_face_row(bench_models):
    result = bench_models.run(["keras_face"], rounds=1, threads=1, sizes=(16, 1), progress=None)
    (row,) = result["rows"]
    assert row["face_us"] > 0 and row["face_target"] == 1.05 and "torch_us" not in row
    assert row["face_over_core"] == pytest.approx(row["face_us"] / row["fastconv_us"])
    assert row["face_acc"] == row["fastconv_acc"]   # the same weights, RNG states and arithmetic
    assert "through fastconv.keras (channels-last input)" in bench_models.to_markdown(result["rows"])
    json.dumps(result)
