"""Losses and metrics against hand computations: values, weighted values, weighted gradients (finite
differences, fused steps included), Keras's names and resolution of "accuracy"."""
import numpy as np
import pytest

from fastconv import Sequential, layers
from fastconv.nn import losses, metrics

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------------------------- losses

def _per_sample_by_hand(name, p, t, delta=1.0):
    """Keras's elementwise formulas, averaged over each sample's elements."""
    n = p.shape[0]
    p, t = p.reshape(n, -1), t.reshape(n, -1) if t.ndim > 1 else t
    if name == "mse":
        return ((p - t) ** 2).mean(axis=1)
    if name == "mae":
        return np.abs(p - t).mean(axis=1)
    if name == "huber":
        a = np.abs(p - t)
        return np.where(a <= delta, 0.5 * a ** 2, delta * a - 0.5 * delta ** 2).mean(axis=1)
    if name == "binary_crossentropy":
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)
    if name == "categorical_crossentropy":
        return -(t * np.log(p)).sum(axis=1)
    return -np.log(p[np.arange(n), t])


def _case(name, n=7, k=4):
    if name in ("mse", "mae", "huber"):
        return RNG.standard_normal((n, k)) * 2, RNG.standard_normal((n, k))
    if name == "binary_crossentropy":
        return RNG.uniform(0.05, 0.95, (n, k)), RNG.integers(0, 2, (n, k)).astype(float)
    p = RNG.dirichlet(np.ones(k), n)
    labels = RNG.integers(0, k, n)
    return (p, np.eye(k)[labels]) if name == "categorical_crossentropy" else (p, labels)


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
                                  "sparse_categorical_crossentropy"])
def test_loss_values_and_weighted_values_match_the_formula(name):
    p, t = _case(name)
    w = RNG.uniform(0, 3, len(p))
    loss = losses.get(name)
    per = _per_sample_by_hand(name, p, t)
    np.testing.assert_allclose(loss(t, p), per.mean(), rtol=1e-12)
    np.testing.assert_allclose(loss(t, p, sample_weight=w), (w * per).sum() / len(p), rtol=1e-12)   # sum / N
    np.testing.assert_allclose(loss.per_sample(p, loss.targets(t, len(p), p.shape[1:], np.float64), False), per,
                               rtol=1e-12)


def test_keras_documented_values():
    """The numbers in Keras's own docstrings."""
    assert losses.Huber()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]) == pytest.approx(0.155, abs=5e-4)
    bce = losses.BinaryCrossentropy(from_logits=True)
    y, z = [[0, 1], [0, 0]], [[-18.6, 0.51], [2.94, -12.8]]
    assert bce(y, z) == pytest.approx(0.8654, abs=5e-4)
    assert bce(y, z, sample_weight=[0.8, 0.2]) == pytest.approx(0.243, abs=1e-3)   # the docstring truncates 0.2436
    assert losses.MeanSquaredError()([[0.0, 1.0]], [[1.0, 1.0]]) == 0.5


def test_huber_delta():
    p, t = _case("huber")
    for delta in (0.3, 1.0, 2.5):
        assert losses.Huber(delta)(t, p) == pytest.approx(_per_sample_by_hand("huber", p, t, delta).mean(), rel=1e-12)
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(0)


def test_loss_names_and_aliases():
    for name, cls in [("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
                      ("MeanSquaredError", losses.MeanSquaredError), ("mae", losses.MeanAbsoluteError),
                      ("mean_absolute_error", losses.MeanAbsoluteError), ("huber", losses.Huber),
                      ("bce", losses.BinaryCrossentropy), ("categorical_crossentropy", losses.CategoricalCrossentropy),
                      ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy)]:
        assert type(losses.get(name)) is cls
    h = losses.Huber(2.0)
    assert losses.get(h) is h
    with pytest.raises(ValueError, match="valid choices: sparse_categorical_crossentropy.*huber"):
        losses.get("hinge")


@pytest.mark.parametrize("make,match", [
    (lambda: losses.CategoricalCrossentropy(label_smoothing=0.1), "label_smoothing=0.1"),
    (lambda: losses.BinaryCrossentropy(label_smoothing=0.2), "label_smoothing=0.2"),
    (lambda: losses.BinaryCrossentropy(axis=1), "axis=1"),
    (lambda: losses.SparseCategoricalCrossentropy(ignore_class=0), "ignore_class=0"),
    (lambda: losses.MeanSquaredError(reduction="sum"), "reduction='sum'"),
    (lambda: losses.Huber(reduction=None), "reduction=None"),
    (lambda: losses.MeanAbsoluteError(dtype="float16"), "dtype='float16'"),
])
def test_keras_arguments_fastconv_lacks_raise_not_implemented(make, match):
    with pytest.raises(NotImplementedError, match=match):
        make()


def test_keras_defaults_are_accepted():
    losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                                   name="cce")
    losses.SparseCategoricalCrossentropy(ignore_class=None, reduction="sum_over_batch_size")
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="avg")


def _model(loss, units, act, seed=3):
    model = Sequential([layers.Dense(5, activation="tanh"), layers.Dense(units, activation=act)],
                       dtype="float64", seed=seed)
    model.compile("sgd", loss)
    return model


GRADIENT_CASES = [
    ("mse", 2, "linear", lambda r: r.standard_normal((6, 2))),
    ("mae", 2, "tanh", lambda r: r.standard_normal((6, 2))),
    (losses.Huber(0.4), 2, "linear", lambda r: r.standard_normal((6, 2)) * 2),
    ("binary_crossentropy", 1, "sigmoid", lambda r: r.integers(0, 2, (6, 1))),                       # fused
    ("categorical_crossentropy", 3, "softmax", lambda r: np.eye(3)[r.integers(0, 3, 6)]),            # fused
    ("sparse_categorical_crossentropy", 3, "softmax", lambda r: r.integers(0, 3, 6)),                # fused kernel
    (losses.SparseCategoricalCrossentropy(from_logits=True), 3, "linear", lambda r: r.integers(0, 3, 6)),
    (losses.BinaryCrossentropy(), 2, "softmax", lambda r: r.uniform(0.1, 0.9, (6, 2))),              # not fused
]


@pytest.mark.parametrize("loss,units,act,targets", GRADIENT_CASES)
def test_weighted_loss_and_gradient(loss, units, act, targets):
    """The weighted loss is sum(w_i l_i)/N of the outputs, and its gradient matches central differences."""
    rng = np.random.default_rng(4)
    x, y, w = rng.standard_normal((6, 4)), targets(rng), rng.uniform(0, 2, 6)
    w[2] = 0.0
    model = _model(loss, units, act)
    value, grads = model.compute_gradients(x, y, sample_weight=w)
    t = model._prepare_t(y, 6)
    per = model.loss.per_sample(model.predict(x), t, model.loss.from_logits)
    assert value == pytest.approx((w * per).sum() / 6, rel=1e-10)
    h = 1e-6
    for i in np.random.default_rng(0).choice(model.params.size, 25, replace=False):
        old = model.params[i]
        model.params[i] = old + h
        lp, _ = model.compute_gradients(x, y, sample_weight=w)
        model.params[i] = old - h
        lm, _ = model.compute_gradients(x, y, sample_weight=w)
        model.params[i] = old
        num = (lp - lm) / (2 * h)
        assert abs(grads[i] - num) <= 1e-6 * max(1.0, abs(num)) + 1e-8, (i, grads[i], num)


def test_unit_weights_give_the_unweighted_loss_and_gradient():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    model = _model("sparse_categorical_crossentropy", 3, "softmax")
    l0, g0 = model.compute_gradients(x, y)
    l1, g1 = model.compute_gradients(x, y, sample_weight=np.ones(8))
    assert l1 == pytest.approx(l0, rel=1e-12)
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-15)
    l2, g2 = model.compute_gradients(x, y, sample_weight=np.full(8, 2.5))
    assert l2 == pytest.approx(2.5 * l0, rel=1e-12)
    np.testing.assert_allclose(g2, 2.5 * g0, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------- metrics

def _topk_by_hand(p, labels, k):
    return np.array([np.sum(row > row[c]) < k for row, c in zip(p, labels)], float)


def test_metric_values_match_numpy():
    n, k = 50, 6
    p = RNG.standard_normal((n, k))
    p[3, :] = 0.5                                   # ties: all classes count as in the top k
    labels = RNG.integers(0, k, n)
    onehot = np.eye(k)[labels]
    w = RNG.uniform(0, 2, n)
    cases = [
        (metrics.CategoricalAccuracy(), onehot, (p.argmax(1) == labels).astype(float)),
        (metrics.SparseCategoricalAccuracy(), labels, (p.argmax(1) == labels).astype(float)),
        (metrics.TopKCategoricalAccuracy(k=2), onehot, _topk_by_hand(p, labels, 2)),
        (metrics.SparseTopKCategoricalAccuracy(), labels, _topk_by_hand(p, labels, 5)),
        (metrics.MeanAbsoluteError(), onehot, np.abs(p - onehot).mean(1)),
        (metrics.MeanSquaredError(), onehot, ((p - onehot) ** 2).mean(1)),
        (metrics.BinaryAccuracy(threshold=0.3), onehot, ((p > 0.3) == onehot).mean(1)),
    ]
    for metric, t, per in cases:
        assert metric.value(p, t) == pytest.approx(per.mean(), rel=1e-12), metric
        assert metric.value(p, t, w) == pytest.approx((w * per).sum() / w.sum(), rel=1e-12), metric
    assert metrics.MeanAbsoluteError().value(p, onehot, np.zeros(n)) == 0.0    # Keras's divide_no_nan


def test_metric_names_and_objects():
    assert metrics.get("acc").name == "acc" and isinstance(metrics.get("acc"), metrics.Accuracy)
    assert metrics.get("ACCURACY").name == "ACCURACY"
    assert isinstance(metrics.get("mae"), metrics.MeanAbsoluteError) and metrics.get("mae").name == "mae"
    assert metrics.get(metrics.MeanAbsoluteError()).name == "mean_absolute_error"
    assert metrics.TopKCategoricalAccuracy(k=3).k == 3
    for bad in ("f1", 3):
        with pytest.raises(ValueError, match="valid choices: accuracy"):
            metrics.get(bad)
    with pytest.raises(ValueError, match="k must be a positive int"):
        metrics.TopKCategoricalAccuracy(k=0)
    with pytest.raises(ValueError, match="threshold"):
        metrics.BinaryAccuracy(threshold=float("nan"))


@pytest.mark.parametrize("loss,units,expected", [
    ("sparse_categorical_crossentropy", 3, metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", 3, metrics.CategoricalAccuracy),
    ("binary_crossentropy", 1, metrics.BinaryAccuracy),
    ("binary_crossentropy", 2, metrics.CategoricalAccuracy),      # Keras 3's rule reads the shapes
    ("mse", 1, metrics.BinaryAccuracy),
    ("mse", 4, metrics.CategoricalAccuracy),
    ("mae", 4, metrics.CategoricalAccuracy),
])
def test_accuracy_resolves_as_keras_3(loss, units, expected):
    act = {"sparse_categorical_crossentropy": "softmax", "categorical_crossentropy": "softmax",
           "binary_crossentropy": "sigmoid"}.get(loss, "linear")
    model = Sequential([layers.Dense(units, activation=act)], seed=0).build((3,))
    model.compile("sgd", loss, ["accuracy", "acc"])
    runs = model._metric_runs()
    assert [name for name, _, _ in runs] == ["accuracy", "acc"]
    assert all(type(m) is expected for _, m, _ in runs)


def test_sparse_metric_with_one_hot_loss_is_refused():
    model = Sequential([layers.Dense(3, activation="softmax")], seed=0).build((2,))
    with pytest.raises(ValueError, match="integer class labels"):
        model.compile("sgd", "categorical_crossentropy", ["sparse_categorical_accuracy"])


def test_duplicate_and_weighted_metric_names_follow_keras():
    model = Sequential([layers.Dense(3, activation="softmax")], seed=0).build((2,))
    model.compile("sgd", "categorical_crossentropy", ["mae", "mae", "accuracy"], weighted_metrics=["mae", "mse"])
    assert [name for name, _, _ in model._metric_runs()] == ["mae", "mae_1", "accuracy", "weighted_mae", "mse"]
    with pytest.raises(TypeError, match="weighted_metrics must be a list"):
        model.compile("sgd", "categorical_crossentropy", weighted_metrics="mae")


@pytest.mark.parametrize("loss,units,act,targets", [
    ("sparse_categorical_crossentropy", 4, "softmax", lambda r: r.integers(0, 4, 40)),
    ("categorical_crossentropy", 4, "softmax", lambda r: np.eye(4)[r.integers(0, 4, 40)]),
    ("binary_crossentropy", 1, "sigmoid", lambda r: r.integers(0, 2, (40, 1))),
    ("mse", 4, "tanh", lambda r: np.eye(4)[r.integers(0, 4, 40)]),
    (losses.BinaryCrossentropy(from_logits=True), 1, "linear", lambda r: r.integers(0, 2, (40, 1))),
])
def test_fit_metrics_equal_the_metrics_of_the_outputs_before_the_step(loss, units, act, targets):
    """One full batch: the epoch's metrics (counted on the fused step's buffers) equal evaluate's before it."""
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((40, 3)), targets(rng)
    w = rng.uniform(0, 2, 40)
    model = Sequential([layers.Dense(6, activation="tanh"), layers.Dense(units, activation=act)],
                       dtype="float64", seed=1)
    sparse = loss == "sparse_categorical_crossentropy"
    names = ["accuracy", "sparse_top_k_categorical_accuracy"] if sparse else \
        ["accuracy", "mae", "mse"] + (["top_k_categorical_accuracy"] if units == 4 else [])
    weighted = ["accuracy"] if sparse else ["mae", "accuracy"]
    model.compile("adam", loss, names, weighted_metrics=weighted)
    before = model.evaluate(x, y, sample_weight=w)
    history = model.fit(x, y, batch_size=40, epochs=1, verbose=0, shuffle=False, sample_weight=w)
    assert set(history.history) == set(before)
    for key, value in before.items():
        assert history.history[key][0] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    if not sparse:
        assert before["weighted_mae"] != pytest.approx(before["mae"], rel=1e-12)   # the weights do apply
