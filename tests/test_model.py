"""Sequential: gradients through every layer, fit/evaluate/predict, save/load, determinism, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
import fastconv.cli
from fastconv import Sequential, layers, load_model, optimizers
from fastconv.nn.step import Step


def finite_difference_check(model, x, y, n_checks=40, h=1e-6, seed=0):
    loss, grads = model.compute_gradients(x, y)
    rng = np.random.default_rng(seed)
    idx = rng.choice(model.params.size, size=min(n_checks, model.params.size), replace=False)
    for i in idx:
        old = model.params[i]
        model.params[i] = old + h
        lp, _ = model.compute_gradients(x, y)
        model.params[i] = old - h
        lm, _ = model.compute_gradients(x, y)
        model.params[i] = old
        num = (lp - lm) / (2 * h)
        assert abs(grads[i] - num) <= 1e-6 * max(1.0, abs(num)) + 1e-8, (i, grads[i], num)


def test_gradients_conv_pool_dense_softmax_ce():
    rng = np.random.default_rng(0)
    model = Sequential([layers.Conv2D(3, 3, padding="same", activation="tanh"), layers.MaxPool2D(2),
                        layers.Conv2D(4, (2, 3), strides=(1, 2), padding=1, activation="sigmoid"),
                        layers.Flatten(), layers.Dense(5, activation="tanh"), layers.Dense(3, activation="softmax")],
                       dtype="float64", seed=1)
    model.compile("adam", "sparse_categorical_crossentropy")
    finite_difference_check(model, rng.standard_normal((4, 2, 8, 8)), rng.integers(0, 3, 4))


@pytest.mark.parametrize("loss,act,targets", [
    ("binary_crossentropy", "sigmoid", lambda r: r.integers(0, 2, (6, 1))),
    ("mse", "linear", lambda r: r.standard_normal((6, 2))),
    ("categorical_crossentropy", "softmax", lambda r: np.eye(3)[r.integers(0, 3, 6)]),
    ("sparse_categorical_crossentropy", "softmax", lambda r: r.integers(0, 3, 6)),
])
def test_gradients_dense_losses(loss, act, targets):
    rng = np.random.default_rng(2)
    units = {"binary_crossentropy": 1, "mse": 2}.get(loss, 3)
    model = Sequential([layers.Dense(7, activation="relu"), layers.Activation("tanh"),
                        layers.Dense(units, activation=act)], dtype="float64", seed=3)
    model.compile("sgd", loss)
    finite_difference_check(model, rng.standard_normal((6, 4)), targets(rng))


def test_parameters_live_in_one_flat_buffer():
    model = Sequential([layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)], seed=0).build((1, 5, 5))
    assert model.count_params() == 4 * 9 + 4 + 2 * 36 + 2
    for layer in (model.layers[0], model.layers[2]):
        for view in list(layer.params.values()) + list(layer.grads.values()):
            assert (view.base is model.params or view.base is model.grads
                    or np.shares_memory(view, model.params) or np.shares_memory(view, model.grads))


def test_first_layer_computes_no_input_gradient():
    """The step decides at compile time which layers need dL/dx: none before the first parameters."""
    model = Sequential([layers.Dropout(0.5), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)], seed=0)
    model.compile("sgd", "mse")
    model.build((1, 5, 5))
    step = Step(model, 2, "train", np.dtype(np.float32))
    conv_backward, dense_backward = step.backward[-1][1], step.backward[0][1]
    assert conv_backward[3] is None                      # conv2d_backward(dy, x, w, dx=None, ...)
    assert dense_backward[4] is not None                 # the Dense after it sends dL/dx back
    assert len(step.forward) == 4                        # dropout's mask and product, conv, dense
    assert len(step.backward) == 2                       # no backward for the dropout before the conv


def test_dropout_is_inverted_and_off_at_inference():
    model = Sequential([layers.Dropout(0.5)], dtype="float64", seed=0).build((10,))
    x = np.ones((2000, 10))
    (y,) = model.backpropagate(x, np.ones_like(x))          # training mode
    assert set(np.unique(y)) <= {0.0, 2.0} and abs(y.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(model.predict(x), x)      # inference: identity


def _moons_model(seed=0):
    model = Sequential([layers.Dense(12, activation="relu", kernel_initializer="he_normal"),
                        layers.Dense(6, activation="relu", kernel_initializer="he_normal"),
                        layers.Dense(1, activation="sigmoid")], dtype="float64", seed=seed)
    model.compile(optimizers.Adam(0.01), "binary_crossentropy", ["accuracy"])
    return model


def test_fit_evaluate_predict_learns_moons():
    x, y = fastconv.datasets.make_moons(400, noise=0.2, seed=0)
    model = _moons_model()
    history = model.fit(x, y, batch_size=32, epochs=60, verbose=0, validation_data=(x, y))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(x, y)
    assert result["accuracy"] > 0.9
    p = model.predict(x)
    assert p.shape == (400, 1) and ((p > 0) & (p < 1)).all()
    assert abs(np.mean((p[:, 0] > 0.5) == y) - result["accuracy"]) < 1e-12


def test_same_seed_gives_bit_identical_training():
    (xt, yt), _ = fastconv.datasets.load_mnist()
    x = xt[:256].astype(np.float32) / 255
    runs = []
    for _ in range(2):
        model = fastconv.cli.seed_cnn(seed=7)
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        h = model.fit(x, yt[:256], batch_size=16, epochs=2, verbose=0)
        runs.append((model.params.copy(), h.history["loss"]))
    assert runs[0][0].tobytes() == runs[1][0].tobytes() and runs[0][1] == runs[1][1]


def test_save_load_round_trip(tmp_path):
    (xt, yt), (xs, _) = fastconv.datasets.load_mnist()
    x = xt[:128].astype(np.float64) / 255
    model = fastconv.cli.seed_cnn(dtype="float64", seed=1)
    model.compile(optimizers.Adam(1e-3, epsilon_hat=True), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, yt[:128], batch_size=8, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    xs = xs[:50].astype(np.float64) / 255
    assert model.predict(xs).tobytes() == loaded.predict(xs).tobytes()
    # optimizer state and RNG travel too: continuing training gives identical weights
    model.fit(x, yt[:128], batch_size=8, verbose=0)
    loaded.fit(x, yt[:128], batch_size=8, verbose=0)
    assert model.params.tobytes() == loaded.params.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left behind
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read"):
        load_model(tmp_path / "junk.npz")


def test_save_load_continues_identically_with_dropout(tmp_path):
    x, y = fastconv.datasets.make_moons(64, noise=0.2, seed=0)
    model = Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                        layers.Dense(1, activation="sigmoid")], dtype="float64", seed=4)
    model.compile("adam", "binary_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=8, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    model.fit(x, y, batch_size=8, verbose=0)
    loaded.fit(x, y, batch_size=8, verbose=0)
    assert model.params.tobytes() == loaded.params.tobytes()


def test_summary_prints_shapes_and_counts(capsys):
    fastconv.cli.seed_cnn().build((1, 28, 28)).summary()
    out = capsys.readouterr().out
    assert "(None, 16, 21, 21)" in out and "(None, 8, 9, 9)" in out and "Total params: 9,586" in out


def test_bad_input_errors():
    model = _moons_model()
    x, y = fastconv.datasets.make_moons(20, seed=0)
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([layers.Dense(1)]).fit(x, y)
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="per-sample shape"):
        model.predict(np.zeros((3, 5)))
    xn = x.copy()
    xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(xn, y, verbose=0)
    with pytest.raises(ValueError, match="x has 20 samples but y has 3"):
        model.fit(x, y[:3], verbose=0)
    clf = Sequential([layers.Dense(3, activation="softmax")])
    clf.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        clf.fit(x, np.full(20, 5), verbose=0)
    with pytest.raises(ValueError, match="valid choices: relu"):
        layers.Dense(3, activation="relux")
    with pytest.raises(ValueError, match="valid choices: sparse_categorical_crossentropy"):
        clf.compile("adam", "hinge")
    with pytest.raises(ValueError, match="valid choices: adam"):
        clf.compile("adadelta")
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        layers.Dense(3, kernel_initializer="he_norml")
    with pytest.raises(ValueError, match="Flatten"):
        Sequential([layers.Dense(3)]).build((1, 4, 4))


def test_cli_train_runs_and_reports_accuracy(tmp_path, capsys):
    code = fastconv.cli.main(["train", "--train", "500", "--test", "200", "--epochs", "1", "--batch-size", "8",
                              "--quiet", "--save", str(tmp_path / "m.npz"), "--init", "he_uniform"])
    out = capsys.readouterr().out
    assert code == 0 and "test accuracy:" in out and (tmp_path / "m.npz").exists()
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.6  # 500 images, one epoch of 63 steps: far above chance (0.1)
    with pytest.raises(SystemExit):
        fastconv.cli.main(["train", "--init", "bogus"])


def test_any_memory_layout_gives_the_same_bits():
    """Inputs are copied into the step's own buffers: Fortran-ordered, strided or float32 inputs to a
    float64 model give the bits of C-contiguous float64 ones."""
    rng = np.random.default_rng(5)
    model = Sequential([layers.Conv2D(4, 3, strides=2, padding=1, activation="relu"),
                        layers.Conv2D(3, (2, 3), activation="relu")], dtype="float64", seed=0).build((2, 9, 9))
    x = rng.standard_normal((3, 2, 9, 9))
    dy = rng.standard_normal((3, 3, 4, 3))
    results = []
    for xin, gin in ((x, dy), (np.asfortranarray(x), np.asfortranarray(dy)), (np.repeat(x, 2, axis=0)[::2], dy)):
        outs = model.backpropagate(xin, gin)
        results.append((outs[-1].tobytes(), model.grads.tobytes()))
    assert results[0] == results[1] == results[2]
    x32 = x.astype(np.float32)
    assert model.predict(x32).tobytes() == model.predict(x32.astype(np.float64)).tobytes()


@pytest.mark.parametrize("loss,units,targets", [
    ("sparse_categorical_crossentropy", 3, lambda r: r.integers(0, 3, 40)),
    ("binary_crossentropy", 1, lambda r: r.integers(0, 2, (40, 1))),
    ("binary_crossentropy", 2, lambda r: r.integers(0, 2, (40, 2))),
])
def test_fit_accuracy_is_the_accuracy_of_the_step_outputs(loss, units, targets):
    """With one full batch, the epoch's training accuracy is that of the weights before the step."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((40, 4)), targets(rng)
    act = "softmax" if units == 3 else "sigmoid"
    model = Sequential([layers.Dense(5, activation="tanh"), layers.Dense(units, activation=act)],
                       dtype="float64", seed=1)
    model.compile("adam", loss, ["accuracy"])
    before = model.evaluate(x, y)["accuracy"]
    history = model.fit(x, y, batch_size=40, epochs=1, verbose=0)
    assert history.history["accuracy"][0] == pytest.approx(before)


def test_labels_checked_once_per_fit_still_guard_later_calls():
    model = Sequential([layers.Dense(3, activation="softmax")], dtype="float64", seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.ones((4, 2))
    model.fit(x, np.array([0, 1, 2, 0]), batch_size=2, verbose=0)
    with pytest.raises(ValueError, match="labels must lie"):
        model.train_on_batch(x, np.array([0, 1, 5, 0]))


def test_every_entry_point_runs_the_compiled_step(monkeypatch):
    """fit, evaluate, predict, train_on_batch, compute_gradients and backpropagate all compute through
    Step (the one training path); no layer has a forward or backward of its own."""
    made = []
    original = Step.__init__

    def counting(self, model, n, kind, *args, **kwargs):
        made.append(kind)
        original(self, model, n, kind, *args, **kwargs)

    monkeypatch.setattr(Step, "__init__", counting)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 1, 6, 6)), rng.integers(0, 3, 6)
    model = Sequential([layers.Conv2D(2, 3, activation="tanh"), layers.MaxPool2D(2), layers.Dropout(0.2),
                        layers.Flatten(), layers.Dense(3, activation="softmax")], dtype="float64", seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=6, epochs=1, verbose=0)
    assert made == ["train"]
    model.evaluate(x, y)
    model.predict(x)
    assert made == ["train", "predict"]                  # evaluate and predict share the inference step
    model.train_on_batch(x, y)
    model.compute_gradients(x, y)
    assert made == ["train", "predict"]                  # same batch size: the same training step
    model.backpropagate(x, np.ones((6, 3)))
    assert made[-1] == "gradient"
    for layer in model.layers:
        assert not hasattr(layer, "forward") and not hasattr(layer, "backward")


@pytest.mark.parametrize("loss,last,fused", [
    ("sparse_categorical_crossentropy", "softmax", True),
    ("categorical_crossentropy", "softmax", True),
    ("binary_crossentropy", "sigmoid", True),
    ("mse", "tanh", False),
    ("mse", "linear", False),
])
def test_fused_losses_are_decided_when_the_step_is_compiled(loss, last, fused):
    """A fused step stops the last layer at its logits; the inference step keeps the activation."""
    model = Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(3, activation=last)], seed=0)
    model.compile("adam", loss)
    model.build((1, 8, 8))
    train = Step(model, 4, "train", np.dtype(np.int64 if loss.startswith("sparse") else np.float32))
    predict = Step(model, 4, "predict")
    has_activation = last != "linear"
    assert len(train.forward) == 2 + (has_activation and not fused)
    assert len(predict.forward) == 2 + has_activation
    assert not hasattr(model.layers[-1], "logits_only")


def test_a_probability_loss_on_a_linear_output_is_refused():
    model = Sequential([layers.Dense(3)], seed=0)
    with pytest.raises(ValueError, match="from_logits=True"):
        model.compile("adam", "sparse_categorical_crossentropy")
    model.compile("adam", fastconv.nn.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.random.default_rng(0).standard_normal((8, 4)), np.arange(8) % 3
    assert np.isfinite(model.fit(x, y, verbose=0).history["loss"][0])


def test_several_metrics_are_logged_under_their_names_and_val_prefix():
    x, y = fastconv.datasets.make_moons(60, noise=0.2, seed=0)
    model = _moons_model()
    model.compile(optimizers.Adam(0.01), "binary_crossentropy", ["acc", "mae", fastconv.nn.metrics.MeanSquaredError()])
    h = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.2)
    assert list(h.history) == ["loss", "acc", "mae", "mean_squared_error", "val_loss", "val_acc", "val_mae",
                               "val_mean_squared_error"]
    result = model.evaluate(x, y)
    p = model.predict(x)[:, 0]
    assert result["acc"] == pytest.approx(np.mean((p > 0.5) == y))
    assert result["mae"] == pytest.approx(np.mean(np.abs(p - y)))
    assert result["mean_squared_error"] == pytest.approx(np.mean((p - y) ** 2))
    assert set(model.train_on_batch(x, y)) == {"loss", "acc", "mae", "mean_squared_error"}


def test_a_model_with_custom_metrics_saves_and_loads(tmp_path):
    from fastconv.nn import metrics

    model = Sequential([layers.Dense(4, activation="softmax")], dtype="float64", seed=0).build((3,))
    model.compile("adam", "categorical_crossentropy", [metrics.TopKCategoricalAccuracy(k=2, name="top2"), "acc"],
                  weighted_metrics=["mae"])
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert [m.name for m in loaded.metrics] == ["top_k_categorical_accuracy", "acc"]   # what the loader reads
    config = model.get_config()["metrics_config"]
    restored = [metrics.deserialize(e) for e in config["metrics"]]
    assert restored[0].name == "top2" and restored[0].k == 2
    assert [metrics.deserialize(e).name for e in config["weighted_metrics"]] == ["mae"]


def test_huber_and_mae_models_train():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.standard_normal((64, 1))
    for loss in ("huber", "mae", "mean_squared_error"):
        model = Sequential([layers.Dense(1)], dtype="float64", seed=0)
        model.compile(optimizers.Adam(0.05), loss, ["mae"])
        h = model.fit(x, y, batch_size=16, epochs=40, verbose=0)
        assert h.history["mae"][-1] < 0.3 * h.history["mae"][0], loss


def test_new_losses_save_and_load_with_their_settings(tmp_path):
    from fastconv.nn import losses

    for i, loss in enumerate([losses.Huber(0.3), "mae", "mean_squared_error"]):
        model = Sequential([layers.Dense(2)], seed=0).build((3,))
        model.compile("adam", loss)
        model.save(tmp_path / f"m{i}.npz")
        loaded = load_model(tmp_path / f"m{i}.npz")
        assert type(loaded.loss) is type(model.loss) and loaded.loss.get_config() == model.loss.get_config()


@st.composite
def relu_pool_cases(draw):
    pool = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(st.sampled_from([0, "same"])) if pool > 1 else 0
    return dict(pool=pool, stride=stride, padding=padding, size=draw(st.integers(max(pool + 2, 5), 9)),
                as_layer=draw(st.booleans()), dtype=draw(st.sampled_from(["float32", "float64"])),
                seed=draw(st.integers(0, 2**31)))


def _relu_pool_model(case, split):
    """Conv -> ReLU -> MaxPool -> Dense; ``split`` puts a no-op Reshape between the ReLU and the pooling,
    which keeps the step from pooling first."""
    conv = [layers.Conv2D(3, 2, activation="relu")] if not case["as_layer"] else \
        [layers.Conv2D(3, 2), layers.Activation("relu")]
    between = [layers.Reshape((3, case["size"] - 1, case["size"] - 1))] if split else []
    return Sequential(conv + between + [
        layers.MaxPool2D(case["pool"], strides=case["stride"], padding=case["padding"]), layers.Flatten(),
        layers.Dense(3, activation="softmax")], dtype=case["dtype"], seed=case["seed"] % 1000)


@settings(max_examples=40, deadline=None)
@given(relu_pool_cases())
def test_relu_then_max_pool_pools_first_with_the_same_bits(case):
    """A train or predict step runs ReLU after the pooling (on fewer elements); parameters, losses and
    predictions stay the same bits as ReLU-then-pool, with ties, windows <= 0 and overlapping windows."""
    rng = np.random.default_rng(case["seed"])
    x = rng.integers(-2, 3, (6, 2, case["size"], case["size"])).astype(case["dtype"])  # ties and zeros
    y = rng.integers(0, 3, 6)
    runs = []
    for split in (False, True):
        model = _relu_pool_model(case, split)
        model.compile("adam", "sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=3, epochs=2, verbose=0)
        runs.append((model.params.tobytes(), history.history["loss"], model.predict(x).tobytes()))
        names = [kernel.__name__ for kernel, _ in model._step("train", 3, y.dtype).forward]
        pool = next(i for i, name in enumerate(names) if name.startswith("maxpool2d_forward"))
        pooled_first = pool < names.index("relu_forward")
        assert pooled_first is not split
    assert runs[0] == runs[1]


def test_relu_then_max_pool_keeps_nan():
    x = np.full((1, 1, 5, 5), -1.0)
    x[0, 0, 1, 1] = np.nan
    for split in (False, True):
        model = Sequential([layers.Activation("relu")] + ([layers.Reshape((1, 5, 5))] if split else [])
                           + [layers.MaxPool2D(2), layers.Flatten()], dtype="float64")
        out = model.predict(x)
        assert np.isnan(out[0, 0]) and (out[0, 1:] == 0).all() and not np.signbit(out[0, 1:]).any()
