"""Sequential: gradients through every layer, fit/evaluate/predict, save/load, determinism, errors."""
import numpy as np
import pytest

import fastconv
import fastconv.cli
from fastconv import Sequential, layers, load_model, optimizers


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
    model = Sequential([layers.Dense(7, activation="relu"), layers.Activation("tanh"), layers.Dense(units, activation=act)],
                       dtype="float64", seed=3)
    model.compile("sgd", loss)
    finite_difference_check(model, rng.standard_normal((6, 4)), targets(rng))


def test_parameters_live_in_one_flat_buffer():
    model = Sequential([layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)], seed=0).build((1, 5, 5))
    assert model.count_params() == 4 * 9 + 4 + 2 * 36 + 2
    for layer in (model.layers[0], model.layers[2]):
        for view in list(layer.params.values()) + list(layer.grads.values()):
            assert view.base is model.params or view.base is model.grads or np.shares_memory(view, model.params) or np.shares_memory(view, model.grads)
    assert model.layers[0].need_dx is False and model.layers[2].need_dx is True


def test_dropout_is_inverted_and_off_at_inference():
    d = layers.Dropout(0.5)
    x = np.ones((2000, 10))
    y = d.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0} and abs(y.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(d.forward(x, training=False), x)


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
    assert not list(tmp_path.glob(".fastconv-*"))  # no temp file left behind
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read"):
        load_model(tmp_path / "junk.npz")


def test_save_load_continues_identically_with_dropout(tmp_path):
    x, y = fastconv.datasets.make_moons(64, noise=0.2, seed=0)
    model = Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3), layers.Dense(1, activation="sigmoid")],
                       dtype="float64", seed=4)
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
        clf.compile("adagrad")
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        layers.Dense(3, kernel_initializer="he_norml")
    with pytest.raises(ValueError, match="Flatten"):
        Sequential([layers.Dense(3)]).build((1, 4, 4))


def test_cli_train_runs_and_reports_accuracy(tmp_path, capsys):
    code = fastconv.cli.main(["train", "--train", "500", "--test", "200", "--epochs", "1", "--batch-size", "8", "--quiet",
                              "--save", str(tmp_path / "m.npz"), "--init", "he_uniform"])
    out = capsys.readouterr().out
    assert code == 0 and "test accuracy:" in out and (tmp_path / "m.npz").exists()
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.6  # 500 images, one epoch of 63 steps: far above chance (0.1)
    with pytest.raises(SystemExit):
        fastconv.cli.main(["train", "--init", "bogus"])


def test_layer_direct_kernel_path_matches_validated_path():
    """Layers call the compiled kernels directly for C-contiguous inputs of the model's dtype and fall back
    to the validating ops otherwise; both give identical outputs and gradients."""
    rng = np.random.default_rng(5)
    model = Sequential([layers.Conv2D(4, 3, strides=2, padding=1, activation="relu"),
                        layers.Conv2D(3, (2, 3), activation="relu")], dtype="float64", seed=0).build((2, 9, 9))
    x = np.asfortranarray(rng.standard_normal((3, 2, 9, 9)))  # not C-contiguous: validated path
    outs, grads = [], []
    for xin in (x, np.ascontiguousarray(x)):
        h = xin
        for layer in model.layers:
            h = layer.forward(h, training=True)
        dy = np.asfortranarray(rng.standard_normal(h.shape)) if xin is x else np.ascontiguousarray(dy_f)
        dy_f = dy
        g = dy
        for layer in reversed(model.layers):
            g = layer.backward(g)
        outs.append(h)
        grads.append(model.grads.copy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(grads[0], grads[1])
    with pytest.raises(TypeError, match="dtype"):
        model.layers[0].forward(x.astype(np.float32))


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
    model = Sequential([layers.Dense(5, activation="tanh"), layers.Dense(units, activation=act)], dtype="float64", seed=1)
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


@pytest.mark.parametrize("dtype, batch, n, use_bias, acts", [
    ("float64", 1, 60, True, ("relu", "relu")),          # seed 000's regime
    ("float32", 8, 45, True, ("relu", None)),            # a last partial batch of 5: a second program
    ("float64", 5, 20, False, (None, "relu")),           # no bias; above the dense kernel's small batch
])
def test_step_program_is_bit_identical_to_layer_by_layer(dtype, batch, n, use_bias, acts):
    """fit runs covered models as flat kernel programs; the same calls on the same inputs must give the
    layer-by-layer step's bits: parameters, optimizer state and history."""
    r = np.random.default_rng(3)
    x = r.random((n, 1, 12, 12))
    y = r.integers(0, 10, n)
    results = []
    for programs in (True, False):
        model = Sequential([layers.Conv2D(4, 3, activation=acts[0], use_bias=use_bias),
                            layers.Conv2D(3, 2, strides=2, activation=acts[1], use_bias=use_bias),
                            layers.Flatten(), layers.Dense(10, activation="softmax")], dtype=dtype, seed=7)
        model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
        model.use_step_programs = programs
        history = model.fit(x, y, batch_size=batch, epochs=2, verbose=0)
        assert model._step_program(batch) is not None  # the covered case: fit used the program
        results.append((model.params.copy(), model.optimizer.state(), history.history))
    (p1, s1, h1), (p2, s2, h2) = results
    assert p1.tobytes() == p2.tobytes()
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert h1 == h2


def test_step_program_covers_only_what_it_can():
    """Layers, activations or losses outside the program's set step layer by layer."""
    def model(*stack, loss="sparse_categorical_crossentropy", last="softmax"):
        m = Sequential(list(stack) + [layers.Flatten(), layers.Dense(3, activation=last)], seed=0)
        m.compile("adam", loss)
        m.build((1, 8, 8))
        m.layers[-1].logits_only = m._fused()
        return m

    assert model(layers.Conv2D(2, 3, activation="relu"))._step_program(4) is not None
    assert model(layers.Conv2D(2, 3), layers.MaxPool2D())._step_program(4) is None
    assert model(layers.Conv2D(2, 3, activation="tanh"))._step_program(4) is None
    assert model(layers.Conv2D(2, 3), layers.Dropout(0.5))._step_program(4) is None
    assert model(layers.Conv2D(2, 3), last="sigmoid", loss="binary_crossentropy")._step_program(4) is None
    assert model(layers.Conv2D(2, 3), last="linear", loss="mse")._step_program(4) is None
