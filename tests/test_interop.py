"""fastconv.interop: PyTorch parameter names, state dicts, and conversion to and from torch.nn.Sequential.

The state-dict tests need no torch and always run; the conversion tests skip cleanly without torch.  Tests
of the layers other branches add to the core (BatchNormalization, average/global pooling, Reshape,
dilated/asymmetric Conv2D, padded MaxPool2D, the new activations) are guarded by ``skipif`` on those
layers and run once they are merged.

Tolerances: a prediction goes through reductions of K_l terms in layer l; each rounds within about
K_l * eps of the sum of its |terms| (conftest.reduction_bound) and the activations are 1-Lipschitz, so two
implementations of the network agree within c * sum_l(K_l) * eps relative to the outputs' scale.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import Sequential, interop, layers
from fastconv.nn import activations

DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------------------------- helpers
def _reduction_length(model, n=1):
    """Sum over the layers of the terms each output (forward) and each weight gradient (backward, batch
    ``n``) sums; a layer without a reduction still rounds once."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, cin, kh, kw = layer.params["kernel"].shape
            total += cin * kh * kw + n * math.prod(layer.output_shape[1:])
        elif isinstance(layer, layers.Dense):
            total += layer.params["kernel"].shape[1] + n
        elif type(layer).__name__ in ("BatchNormalization", "GlobalAveragePooling2D", "AveragePooling2D"):
            total += n * math.prod(layer.input_shape[1:]) if len(layer.input_shape) > 1 else n
        else:
            total += 1
    return total


def assert_close_to_rounding(fast, ref, model, what, n=1, scale=None):
    """|fast - ref| <= 4 * K * eps * scale with K the model's summed reduction length (module docstring)."""
    fast, ref = np.asarray(fast, np.float64), np.asarray(ref, np.float64)
    assert fast.shape == ref.shape, (what, fast.shape, ref.shape)
    eps = np.finfo(model.dtype).eps
    scale = max(1.0, float(np.abs(ref).max())) if scale is None else scale
    bound = 4 * _reduction_length(model, n) * eps * scale
    err = float(np.abs(fast - ref).max()) if fast.size else 0.0
    assert err <= bound, f"{what}: max |fast - ref| = {err:.3e} > {bound:.3e}"


def lenet(dtype=np.float32, seed=0):
    """A LeNet-like CNN: padding, stride, pooling, dropout, every activation of today's core."""
    return Sequential([
        layers.Conv2D(6, 5, padding=2, activation="relu"), layers.MaxPool2D(2),
        layers.Conv2D(8, 3, strides=2, padding=1, activation="tanh"), layers.MaxPool2D(2, strides=1),
        layers.Conv2D(5, (2, 3), padding=(1, 0), use_bias=False), layers.Activation("sigmoid"),
        layers.Flatten(), layers.Dropout(0.3), layers.Dense(20, activation="relu"),
        layers.Dense(10, activation="softmax")], dtype=dtype, seed=seed).build((1, 16, 16))


def mlp(dtype=np.float32, seed=0, acts=("relu", "sigmoid", "tanh", "linear")):
    stack = [layers.Dense(9, activation=a) for a in acts]
    return Sequential(stack + [layers.Dense(4, activation="softmax")], dtype=dtype, seed=seed).build((7,))


def _inputs(model, n=5, seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + model.input_shape).astype(model.dtype)


def _torch_predict(torch, net, x):
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def _randomise(model, seed=3, keep=()):
    """Non-trivial values in every tensor (biases too, not the keys in ``keep``), through the NumPy state dict."""
    rng = np.random.default_rng(seed)
    sd = interop.state_dict(model)
    for key, value in sd.items():
        if key in keep:
            continue
        if key.endswith("running_var"):
            sd[key] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith("num_batches_tracked"):
            continue
        else:
            sd[key] = 0.5 * rng.standard_normal(value.shape)
    interop.load_state_dict(model, sd)
    return model


# ---------------------------------------------------------------------- state dicts (no torch needed)
def test_state_dict_names_follow_the_torch_sequential():
    model = lenet()
    sd = interop.state_dict(model)
    # Conv2d ReLU MaxPool Conv2d Tanh MaxPool Conv2d(no bias) Sigmoid Flatten Dropout Linear ReLU Linear Softmax
    assert list(sd) == ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "10.weight", "10.bias",
                        "12.weight", "12.bias"]
    assert sd["0.weight"].shape == (6, 1, 5, 5) and sd["6.weight"].shape == (5, 8, 2, 3)
    assert sd["10.weight"].shape == (20, 5 * 4 * 1) and sd["12.bias"].shape == (10,)
    np.testing.assert_array_equal(sd["3.weight"], model.layers[2].params["kernel"])
    assert list(interop.state_dict(mlp(acts=("linear", "relu")))) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                                                       "3.weight", "3.bias"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_values_are_copies_in_the_model_dtype(dtype):
    model = lenet(dtype)
    sd = interop.state_dict(model)
    assert all(v.dtype == dtype for v in sd.values())
    before = model.params.copy()
    for v in sd.values():
        v[...] = 7
    np.testing.assert_array_equal(model.params, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_round_trip_is_bit_exact(dtype):
    a, b = lenet(dtype, seed=0), lenet(dtype, seed=1)
    x = _inputs(a)
    assert not np.array_equal(a.predict(x), b.predict(x))
    result = interop.load_state_dict(b, interop.state_dict(a))
    assert result == interop.IncompatibleKeys([], [])
    np.testing.assert_array_equal(b.params, a.params)
    np.testing.assert_array_equal(b.predict(x), a.predict(x))


def test_load_state_dict_casts_and_takes_array_likes():
    model = mlp(np.float32)
    sd = {k: v.astype(np.float64).tolist() for k, v in interop.state_dict(mlp(np.float64, seed=5)).items()}
    interop.load_state_dict(model, sd)
    np.testing.assert_array_equal(model.layers[0].params["kernel"], np.asarray(sd["0.weight"], np.float32))


def test_load_state_dict_strict_names_missing_and_unexpected_keys():
    model = lenet()
    sd = interop.state_dict(model)
    del sd["3.bias"]
    sd["99.weight"] = np.zeros(3)
    with pytest.raises(KeyError, match=r"missing keys: 3\.bias.*unexpected keys: 99\.weight"):
        interop.load_state_dict(model, sd)
    with pytest.raises(KeyError, match=r"missing keys: 3\.bias"):
        interop.load_state_dict(model, {k: v for k, v in sd.items() if k != "99.weight"})
    with pytest.raises(KeyError, match=r"unexpected keys: 99\.weight"):
        interop.load_state_dict(model, {**interop.state_dict(model), "99.weight": np.zeros(3)})


def test_load_state_dict_non_strict_loads_the_rest_and_reports():
    target, source = lenet(seed=0), lenet(seed=1)
    sd = interop.state_dict(source)
    del sd["3.bias"]
    sd["extra"] = np.zeros(1)
    old_bias = target.layers[2].params["bias"].copy()
    result = interop.load_state_dict(target, sd, strict=False)
    assert result.missing_keys == ["3.bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(target.layers[0].params["kernel"], source.layers[0].params["kernel"])
    np.testing.assert_array_equal(target.layers[2].params["bias"], old_bias)


@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_wrong_shape_names_the_key_and_writes_nothing(strict):
    model = lenet()
    before = model.params.copy()
    sd = {k: v + 1 for k, v in interop.state_dict(model).items()}
    sd["10.weight"] = sd["10.weight"][:, :-1]
    with pytest.raises(ValueError, match=r"'10\.weight'.*\(20, 19\).*\(20, 20\)"):
        interop.load_state_dict(model, sd, strict=strict)
    np.testing.assert_array_equal(model.params, before)


def test_load_state_dict_bad_arguments():
    model = mlp()
    with pytest.raises(TypeError, match="mapping"):
        interop.load_state_dict(model, [("0.weight", 1)])
    with pytest.raises(TypeError, match="keys must be strings"):
        interop.load_state_dict(model, {0: np.zeros(1)})
    with pytest.raises(TypeError, match="numeric"):
        interop.load_state_dict(model, {**interop.state_dict(model), "0.bias": np.array(["a"] * 9)})
    with pytest.raises(TypeError, match="fastconv.Sequential"):
        interop.state_dict("model")
    with pytest.raises(RuntimeError, match="not built"):
        interop.state_dict(Sequential([layers.Dense(3)]))
    with pytest.raises(RuntimeError, match="not built"):
        interop.load_state_dict(Sequential([layers.Dense(3)]), {})


def test_softmax_on_feature_maps_has_no_torch_module():
    model = Sequential([layers.Conv2D(2, 3, activation="softmax")]).build((1, 5, 5))
    with pytest.raises(NotImplementedError, match="softmax on per-sample shape"):
        interop.state_dict(model)


def test_state_dicts_work_where_torch_cannot_be_imported():
    code = ("import sys; sys.modules['torch'] = None\n"     # makes `import torch` raise ImportError
            "import numpy as np\n"
            "from fastconv import Sequential, interop, layers\n"
            "m = Sequential([layers.Dense(3, activation='relu'), layers.Dense(2)], seed=0).build((4,))\n"
            "sd = interop.state_dict(m)\n"
            "interop.load_state_dict(m, sd)\n"
            "try:\n"
            "    interop.to_torch(m)\n"
            "except ImportError as e:\n"
            "    print('no torch:', e)\n"
            "print(list(sd))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(fastconv.__file__))).stdout
    assert "no torch: fastconv.interop.to_torch/from_torch need PyTorch" in out
    assert "['0.weight', '0.bias', '2.weight', '2.bias']" in out


# ------------------------------------------------------------------------------------------- to_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("build", [lenet, mlp], ids=["lenet", "mlp"])
def test_to_torch_predicts_what_the_model_predicts(build, dtype):
    torch = pytest.importorskip("torch")
    model = _randomise(build(dtype)) if build is mlp else build(dtype)
    net = interop.to_torch(model)
    assert isinstance(net, torch.nn.Sequential) and net.training
    assert all(p.dtype == (torch.float32 if dtype == np.float32 else torch.float64) for p in net.parameters())
    x = _inputs(model, n=6)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, "to_torch prediction")


@pytest.mark.parametrize("build", [lenet, mlp], ids=["lenet", "mlp"])
def test_state_dict_keys_equal_the_torch_state_dict_keys(build):
    torch = pytest.importorskip("torch")
    model = build()
    sd, tsd = interop.state_dict(model), interop.to_torch(model).state_dict()
    assert list(sd) == list(tsd.keys())
    for key in sd:
        np.testing.assert_array_equal(tsd[key].numpy(), sd[key], err_msg=key)
    # the weights are copies: training the torch net leaves the model alone
    before = model.params.copy()
    with torch.no_grad():
        next(interop.to_torch(model).parameters()).add_(1)
    np.testing.assert_array_equal(model.params, before)


def test_to_torch_layout_of_modules():
    torch = pytest.importorskip("torch")
    net = interop.to_torch(lenet())
    nn = torch.nn
    kinds = [type(m) for m in net]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.Tanh, nn.MaxPool2d, nn.Conv2d, nn.Sigmoid,
                     nn.Flatten, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear, nn.Softmax]
    assert net[3].stride == (2, 2) and net[3].padding == (1, 1) and net[6].padding == (1, 0)
    assert net[6].bias is None and net[9].p == 0.3 and net[5].stride == (1, 1) and net[13].dim == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_takes_torch_tensors(dtype):
    torch = pytest.importorskip("torch")
    model, other = lenet(dtype, seed=0), lenet(dtype, seed=4)
    net = interop.to_torch(other)
    tensors = dict(net.named_parameters())          # requires_grad tensors
    assert all(t.requires_grad for t in tensors.values())
    interop.load_state_dict(model, tensors)
    np.testing.assert_array_equal(model.params, other.params)
    for half in (torch.float16, torch.bfloat16):     # types NumPy has and lacks
        interop.load_state_dict(model, {k: v.to(half) for k, v in net.state_dict().items()})
        expected = torch.from_numpy(other.params).to(half).double().numpy().astype(dtype)
        np.testing.assert_array_equal(model.params, expected)


@st.composite
def conv_nets(draw):
    """A random Conv2D -> (MaxPool2D) -> Flatten -> Dense net of today's layers that fits its input."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    H, W = draw(st.integers(kh, 9)), draw(st.integers(kw, 9))
    act = draw(st.sampled_from(["relu", "sigmoid", "tanh", "linear"]))
    stack = [layers.Conv2D(draw(st.integers(1, 4)), (kh, kw), strides=(sh, sw), padding=(ph, pw), activation=act,
                           use_bias=draw(st.booleans()))]
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if Ho >= 2 and Wo >= 2 and draw(st.booleans()):
        stack.append(layers.MaxPool2D(2, strides=draw(st.integers(1, 2))))
    stack += [layers.Flatten(), layers.Dense(draw(st.integers(1, 5)), activation=draw(st.sampled_from(
        ["softmax", "linear", "relu"])))]
    dtype = draw(st.sampled_from(DTYPES))
    return Sequential(stack, dtype=dtype, seed=draw(st.integers(0, 2**16))).build((draw(st.integers(1, 3)), H, W))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets())
def test_random_conv_nets_convert_both_ways(model):
    torch = pytest.importorskip("torch")
    _randomise(model)
    net = interop.to_torch(model)
    assert list(net.state_dict().keys()) == list(interop.state_dict(model))
    x = _inputs(model, n=3)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, "random net to_torch")
    back = interop.from_torch(net, input_shape=model.input_shape)
    np.testing.assert_array_equal(back.params, model.params)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


# ----------------------------------------------------------------------------------------- from_torch
def _torch_lenet(torch, dtype):
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.Tanh(), nn.MaxPool2d(2, stride=1),
                         nn.Conv2d(8, 5, (2, 3), padding=(1, 0), bias=False), nn.Sigmoid(), nn.Flatten(),
                         nn.Dropout(0.25), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 10),
                         nn.Softmax(dim=1)).to(getattr(torch, np.dtype(dtype).name))


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_torch_round_trip(dtype):
    torch = pytest.importorskip("torch")
    net = _torch_lenet(torch, dtype)
    model = interop.from_torch(net, input_shape=(1, 16, 16))
    assert model.built and model.dtype == dtype and model.input_shape == (1, 16, 16)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "Conv2D", "Flatten", "Dropout", "Dense", "Dense"]
    assert [getattr(layer, "activation", None) for layer in model.layers] == [
        "relu", None, "tanh", None, "sigmoid", None, None, "relu", "softmax"]
    x = _inputs(model, n=6)
    assert_close_to_rounding(model.predict(x), _torch_predict(torch, net, x), model, "from_torch prediction")
    back = interop.to_torch(model).state_dict()
    assert list(back.keys()) == list(net.state_dict().keys())
    for key, value in net.state_dict().items():
        assert torch.equal(back[key], value), key


def test_from_torch_leaves_the_module_mode_and_takes_a_batch_shape():
    torch = pytest.importorskip("torch")
    net = _torch_lenet(torch, np.float32).train()
    model = interop.from_torch(net, input_shape=(None, 1, 16, 16))
    assert model.input_shape == (1, 16, 16)
    assert all(m.training for m in net.modules())
    assert interop.from_torch(net, input_shape=(4, 1, 16, 16)).input_shape == (1, 16, 16)


def test_from_torch_mlp_infers_the_input_shape_and_nested_sequentials():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(1)
    net = nn.Sequential(nn.Sequential(nn.Linear(7, 9), nn.Tanh()), nn.Identity(), nn.Linear(9, 9, bias=False),
                        nn.Dropout(0.1), nn.ReLU(), nn.Linear(9, 3), nn.Sigmoid())
    model = interop.from_torch(net, seed=0)
    assert model.input_shape == (7,) and model.seed == 0
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense", "Dropout", "Activation", "Dense"]
    assert model.layers[3].activation == "relu" and model.layers[1].use_bias is False
    x = _inputs(model)
    assert_close_to_rounding(model.predict(x), _torch_predict(torch, net, x), model, "mlp")


def test_from_torch_needs_input_shape_for_convolutions():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="input_shape"):
        interop.from_torch(_torch_lenet(torch, np.float32))
    with pytest.raises(ValueError, match="fails on per-sample input shape"):
        interop.from_torch(_torch_lenet(torch, np.float32), input_shape=(3, 16, 16))


@pytest.mark.parametrize("make,match", [
    (lambda nn: nn.Sequential(nn.Conv2d(2, 4, 3, groups=2)), "groups=2"),
    (lambda nn: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect")), "padding_mode='reflect'"),
    (lambda nn: nn.Sequential(nn.Conv2d(2, 4, 3), nn.Dropout2d(0.5)), "Dropout2d"),
    (lambda nn: nn.Sequential(nn.Conv2d(2, 4, 3), nn.Upsample(scale_factor=2)), "Upsample"),
    (lambda nn: nn.Sequential(nn.ZeroPad2d(1), nn.Flatten()), "ZeroPad2d"),
    (lambda nn: nn.Sequential(nn.ZeroPad2d(-1), nn.Conv2d(2, 2, 3)), "cropping"),
    (lambda nn: nn.Sequential(nn.ConstantPad2d(1, 2.0), nn.MaxPool2d(2)), "ConstantPad2d"),
    (lambda nn: nn.Sequential(nn.Conv2d(2, 4, 3), nn.Softmax(dim=1)), "Softmax"),
    (lambda nn: nn.Sequential(nn.Conv2d(2, 4, 3), nn.AdaptiveAvgPool2d(2)), "output_size"),
    (lambda nn: nn.Sequential(nn.MaxPool2d(2, dilation=2)), "dilation"),
    (lambda nn: nn.Sequential(nn.MaxPool2d(2, return_indices=True)), "returns a tuple"),
    (lambda nn: nn.Sequential(nn.Conv2d(2, 2, 3), nn.Softplus(beta=2)), "beta=2"),
])
def test_from_torch_names_what_it_cannot_map(make, match):
    torch = pytest.importorskip("torch")
    with pytest.raises(NotImplementedError, match=match):
        interop.from_torch(make(torch.nn), input_shape=(2, 8, 8))


def test_from_torch_bad_modules():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        interop.from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no layers"):
        interop.from_torch(nn.Sequential())
    with pytest.raises(NotImplementedError, match="float16"):
        interop.from_torch(nn.Sequential(nn.Linear(2, 2)).half())
    mixed = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).double())
    with pytest.raises(NotImplementedError, match="mixes dtypes"):
        interop.from_torch(mixed)


def test_from_torch_folds_a_symmetric_zero_pad_into_the_conv():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(2)
    net = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten())
    model = interop.from_torch(net, input_shape=(2, 5, 5))
    assert model.layers[0].padding == (2, 2) and model.layers[0].activation == "relu"
    x = _inputs(model)
    assert_close_to_rounding(model.predict(x), _torch_predict(torch, net, x), model, "zero pad")


# ---------------------------------------------------------------------------------------- training
def _one_sgd_step(torch, model, x, y, lr):
    """The torch net's new parameters after one SGD step on (x, y) (cross-entropy on the logits)."""
    net = interop.to_torch(model).train()
    logits = net[:-1]                                   # without the final Softmax: CrossEntropyLoss fuses it
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss = torch.nn.functional.cross_entropy(logits(torch.from_numpy(x)), torch.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    grads = {k: p.grad.numpy().copy() for k, p in net.named_parameters()}
    opt.step()
    return float(loss.detach()), grads, {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_sgd_step_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    model = Sequential([
        layers.Conv2D(4, 3, padding=1, activation="relu"), layers.MaxPool2D(2),
        layers.Conv2D(6, 3, strides=2, activation="tanh"), layers.Flatten(), layers.Dense(12, activation="sigmoid"),
        layers.Dense(5, activation="softmax")], dtype=dtype, seed=0).build((2, 10, 10))
    _randomise(model)
    lr = 0.1
    model.compile(fastconv.optimizers.SGD(learning_rate=lr), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    n = 8
    x = rng.standard_normal((n,) + model.input_shape).astype(dtype)
    y = rng.integers(0, 5, n)
    t_loss, t_grads, t_new = _one_sgd_step(torch, model, x, y, lr)
    loss, flat = model.compute_gradients(x, y)
    assert abs(loss - t_loss) <= 4 * _reduction_length(model, n) * np.finfo(dtype).eps * max(1.0, abs(t_loss))
    model.train_on_batch(x, y)
    g_scale = max(float(np.abs(g).max()) for g in t_grads.values())
    new = interop.state_dict(model)
    offset = 0
    for key, tg in t_grads.items():
        g = flat[offset:offset + tg.size].reshape(tg.shape)
        offset += tg.size
        assert_close_to_rounding(g, tg, model, f"gradient {key}", n=n, scale=g_scale)
        # w' = w - lr * g in both: the gradients' difference scaled by lr, plus one rounding of w'
        w_scale = lr * g_scale + float(np.abs(t_new[key]).max())
        assert_close_to_rounding(new[key], t_new[key], model, f"new {key}", n=n, scale=w_scale)


# ------------------------------------------------------------------- layers other branches add (guarded)
def _bn(**kw):
    return fastconv.layers.BatchNormalization(**kw)


def _bn_model(dtype, convention="torch", momentum=0.1, center=True, scale=True):
    return Sequential([
        layers.Conv2D(4, 3, padding=1), _bn(momentum=momentum, convention=convention, center=center, scale=scale),
        layers.Activation("relu"), layers.Flatten(), layers.Dense(6),
        _bn(momentum=momentum, convention=convention, center=center, scale=scale),
        layers.Dense(3, activation="softmax")], dtype=dtype, seed=0).build((2, 6, 6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_to_torch_and_back(dtype):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = _randomise(_bn_model(dtype))
    sd = interop.state_dict(model)
    assert [k for k in sd if k.startswith("1.")] == ["1.weight", "1.bias", "1.running_mean", "1.running_var",
                                                    "1.num_batches_tracked"]
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"].shape == ()
    net = interop.to_torch(model)
    assert type(net[1]) is nn.BatchNorm2d and type(net[5]) is nn.BatchNorm1d
    assert net[1].momentum == pytest.approx(0.1) and net[1].eps == pytest.approx(model.layers[1].epsilon)
    assert list(net.state_dict().keys()) == list(sd)
    x = _inputs(model)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, "batchnorm to_torch")
    back = interop.from_torch(net, input_shape=(2, 6, 6))
    assert [type(layer).__name__ for layer in back.layers] == [type(layer).__name__ for layer in model.layers]
    assert back.layers[1].convention == "torch" and back.layers[1].momentum == pytest.approx(0.1)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_batchnorm_keras_convention_momentum():
    pytest.importorskip("torch")
    net = interop.to_torch(_bn_model(np.float32, convention="keras", momentum=0.99))
    assert net[1].momentum == pytest.approx(0.01)


def test_batchnorm_without_scale_is_a_fixed_torch_weight():
    torch = pytest.importorskip("torch")
    model = _randomise(_bn_model(np.float64, center=True, scale=False), keep=("1.weight", "5.weight"))
    sd = interop.state_dict(model)
    np.testing.assert_array_equal(sd["1.weight"], np.ones(4))
    net = interop.to_torch(model)
    assert not net[1].weight.requires_grad and net[1].bias.requires_grad
    x = _inputs(model)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, "batchnorm scale=False")
    sd["1.weight"] = np.full(4, 2.0)
    with pytest.raises(ValueError, match=r"'1\.weight'\] must be all 1"):
        interop.load_state_dict(model, sd)
    interop.load_state_dict(model, {k: v for k, v in sd.items() if k != "1.weight"}, strict=False)


def test_batchnorm_from_torch_names_what_it_cannot_map():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with pytest.raises(NotImplementedError, match="momentum=None"):
        interop.from_torch(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=None)))
    with pytest.raises(NotImplementedError, match="track_running_stats=False"):
        interop.from_torch(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_sgd_step_with_batchnorm_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    model = _randomise(_bn_model(dtype))
    lr = 0.05
    model.compile(fastconv.optimizers.SGD(learning_rate=lr), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(6)
    n = 8
    x = rng.standard_normal((n,) + model.input_shape).astype(dtype)
    y = rng.integers(0, 3, n)
    _, t_grads, t_new = _one_sgd_step(torch, model, x, y, lr)
    model.train_on_batch(x, y)
    new = interop.state_dict(model)
    g_scale = max(float(np.abs(g).max()) for g in t_grads.values())
    for key, value in t_new.items():
        if key.endswith("num_batches_tracked"):
            continue
        scale = lr * g_scale + float(np.abs(value).max())
        assert_close_to_rounding(new[key], value, model, f"new {key}", n=n, scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(pool_size=2), dict(pool_size=3, strides=2, padding=1),
                                dict(pool_size=3, strides=2, padding=1, count_include_pad=False),
                                dict(pool_size=3, strides=2, padding=1, ceil_mode=True),
                                dict(pool_size=2, strides=1, padding=(1, 0, 0, 1))])
def test_average_pooling_to_torch_and_back(kw, dtype):
    torch = pytest.importorskip("torch")
    model = _randomise(Sequential([layers.Conv2D(3, 3), fastconv.layers.AveragePooling2D(**kw), layers.Flatten()],
                                  dtype=dtype, seed=0).build((2, 9, 9)))
    net = interop.to_torch(model)
    kinds = [type(m).__name__ for m in net]
    assert "AvgPool2d" in kinds and ("ZeroPad2d" in kinds) == (not _symmetric_pads(model.layers[1]))
    x = _inputs(model)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, f"avgpool {kw}")
    back = interop.from_torch(net, input_shape=(2, 9, 9))
    assert_close_to_rounding(back.predict(x), model.predict(x), model, f"avgpool back {kw}")


def test_average_pooling_asymmetric_uncounted_pads_have_no_torch_module():
    pytest.importorskip("torch")
    model = Sequential([layers.Conv2D(3, 3), fastconv.layers.AveragePooling2D(2, strides=2, padding="same")],
                       seed=0).build((2, 8, 7))
    if _symmetric_pads(model.layers[1]):
        pytest.skip("'same' gave symmetric pads here")
    with pytest.raises(NotImplementedError, match="count_include_pad=False"):
        interop.to_torch(model)


def _symmetric_pads(layer):
    top, bottom, left, right = layer.pads
    return top == bottom and left == right


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_pooling_to_torch_and_back(dtype):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    for glob, pool in (("GlobalAveragePooling2D", nn.AdaptiveAvgPool2d), ("GlobalMaxPooling2D", nn.AdaptiveMaxPool2d)):
        model = _randomise(Sequential([layers.Conv2D(4, 3, activation="relu"), getattr(fastconv.layers, glob)(),
                                       layers.Dense(3)], dtype=dtype, seed=0).build((2, 7, 7)))
        net = interop.to_torch(model)
        assert [type(m) for m in net] == [nn.Conv2d, nn.ReLU, pool, nn.Flatten, nn.Linear]
        assert list(net.state_dict().keys()) == ["0.weight", "0.bias", "4.weight", "4.bias"]
        x = _inputs(model)
        assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, glob)
        back = interop.from_torch(net, input_shape=(2, 7, 7))
        assert [type(layer).__name__ for layer in back.layers] == ["Conv2D", glob, "Dense"]
        np.testing.assert_array_equal(back.predict(x), model.predict(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reshape_to_torch_and_back(dtype):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    Reshape = fastconv.layers.Reshape
    model = _randomise(Sequential([layers.Dense(12), Reshape((3, 2, 2)), layers.Conv2D(2, 1), Reshape((4, -1)),
                                   Reshape((-1,)), layers.Dense(2)], dtype=dtype, seed=0).build((5,)))
    net = interop.to_torch(model)
    assert [type(m) for m in net] == [nn.Linear, nn.Unflatten, nn.Conv2d, nn.Flatten, nn.Unflatten, nn.Flatten,
                                      nn.Linear]
    x = _inputs(model)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, "reshape")
    back = interop.from_torch(net)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_adaptive_pool_without_flatten_becomes_global_pool_and_reshape():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(3, 2))
    net2 = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveAvgPool2d(1))
    model = interop.from_torch(net2, input_shape=(2, 5, 5))
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "GlobalAveragePooling2D", "Reshape"]
    assert model.output_shape == (3, 1, 1)
    model = interop.from_torch(net, input_shape=(2, 5, 5))
    x = _inputs(model)
    assert_close_to_rounding(model.predict(x), _torch_predict(torch, net, x), model, "adaptive pool")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(kernel_size=3, dilation_rate=2, padding=2),
                                dict(kernel_size=4, strides=2, padding="same"),
                                dict(kernel_size=(3, 2), padding=(0, 1, 2, 0)),
                                dict(kernel_size=3, strides=1, padding="same", dilation_rate=(1, 2))])
def test_contract_conv_to_torch_and_back(kw, dtype):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = _randomise(Sequential([layers.Conv2D(3, activation="relu", **kw), layers.Flatten()], dtype=dtype,
                                  seed=0).build((2, 9, 8)))
    net = interop.to_torch(model)
    conv = [m for m in net if isinstance(m, nn.Conv2d)][0]
    assert conv.dilation == tuple(model.layers[0].dilation_rate)
    assert any(isinstance(m, nn.ZeroPad2d) for m in net) == (not _symmetric_pads(model.layers[0]))
    x = _inputs(model)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, f"conv {kw}")
    back = interop.from_torch(net, input_shape=(2, 9, 8))
    assert back.layers[0].pads == model.layers[0].pads and back.layers[0].activation == "relu"
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_from_torch_same_padding_string():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 3, 4, padding="same"), nn.Conv2d(3, 2, 3, padding="valid", dilation=2))
    model = interop.from_torch(net, input_shape=(2, 9, 9))
    assert model.layers[0].pads == (1, 2, 1, 2)
    x = _inputs(model)
    assert_close_to_rounding(model.predict(x), _torch_predict(torch, net, x), model, "same string")


@pytest.mark.parametrize("padding", [1, (1, 0), (0, 1, 1, 0)])
def test_padded_maxpool_to_torch_and_back(padding):
    torch = pytest.importorskip("torch")
    model = _randomise(Sequential([layers.Conv2D(2, 3), layers.MaxPool2D(3, strides=2, padding=padding),
                                   layers.Flatten()], dtype=np.float64, seed=0).build((1, 9, 9)))
    net = interop.to_torch(model)
    x = _inputs(model)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, f"maxpool pad {padding}")
    back = interop.from_torch(net, input_shape=(1, 9, 9))
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


CONTRACT_ACTIVATIONS = [("elu", "ELU"), ("selu", "SELU"), ("gelu", "GELU"), ("gelu_tanh", "GELU"),
                        ("leaky_relu", "LeakyReLU"), ("silu", "SiLU"), ("swish", "SiLU"), ("softplus", "Softplus"),
                        ("softsign", "Softsign"), ("relu6", "ReLU6"), ("hard_sigmoid", "Hardsigmoid")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,module", CONTRACT_ACTIVATIONS)
def test_contract_activations_to_torch_and_back(name, module, dtype):
    torch = pytest.importorskip("torch")
    model = _randomise(Sequential([layers.Dense(6, activation=name), layers.Activation(name), layers.Dense(2)],
                                  dtype=dtype, seed=0).build((4,)))
    net = interop.to_torch(model)
    assert [type(m).__name__ for m in net] == ["Linear", module, module, "Linear"]
    if name == "gelu_tanh":
        assert net[1].approximate == "tanh"
    x = 3 * _inputs(model, n=16)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, name)
    back = interop.from_torch(net)
    assert [type(layer).__name__ for layer in back.layers] == ["Dense", "Activation", "Dense"]
    assert_close_to_rounding(back.predict(x), model.predict(x), model, name)


@pytest.mark.parametrize("make,module,attr,value", [
    (lambda: activations.LeakyReLU(negative_slope=0.2), "LeakyReLU", "negative_slope", 0.2),
    (lambda: activations.ELU(alpha=0.5), "ELU", "alpha", 0.5),
    (lambda: activations.GELU(approximate="tanh"), "GELU", "approximate", "tanh"),
])
def test_parametrised_activations_keep_their_parameters(make, module, attr, value):
    torch = pytest.importorskip("torch")
    model = _randomise(Sequential([layers.Dense(5, activation=make()), layers.Dense(2)], dtype=np.float64,
                                  seed=0).build((3,)))
    net = interop.to_torch(model)
    assert type(net[1]).__name__ == module and getattr(net[1], attr) == value
    x = 3 * _inputs(model, n=16)
    assert_close_to_rounding(_torch_predict(torch, net, x), model.predict(x), model, module)
    back = interop.from_torch(net)
    assert getattr(back.layers[0].activation_fn, attr) == value
    assert_close_to_rounding(back.predict(x), model.predict(x), model, module)


def test_docstring_examples_run():
    pytest.importorskip("torch")
    import doctest
    result = doctest.testmod(interop, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0, result
