"""compression.quantization.folding: BatchNorm folding, min-max weight quantization, bias correction."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from compression.quantization.affine import fake_quantize
from compression.quantization.bias_correction import bias_correction, quantize_weight_array
from compression.quantization.folding import fold_batchnorm, folded_index_map
from tinynet import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Flatten,
    Linear,
    Mask,
    MaxPool2d,
    Parameter,
    ReLU,
    Sequential,
    Transform,
)


def outputs(model, x):
    with tinynet.no_grad():
        return model(x)


def set_bn(bn, gamma, beta, mean, var):
    bn.weight = Parameter(np.asarray(gamma, dtype=np.float32))
    bn.bias = Parameter(np.asarray(beta, dtype=np.float32))
    bn.register_buffer("running_mean", np.asarray(mean, dtype=np.float32))
    bn.register_buffer("running_var", np.asarray(var, dtype=np.float32))


def warm_up(model, x, steps=4, seed=0):
    """Non-trivial running statistics and affine parameters: a few training-mode forwards."""
    rng = np.random.default_rng(seed)
    for m in model:
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            m.weight.data = rng.uniform(0.5, 2.0, m.num_features).astype(m.weight.data.dtype)
            m.bias.data = rng.normal(0, 0.5, m.num_features).astype(m.bias.data.dtype)
    model.train()
    with tinynet.no_grad():
        for i in range(steps):
            model(x[i::steps])
    return model.eval()


def conv_bn_model():
    return Sequential(
        Conv2d(2, 4, 3, padding=1),
        BatchNorm2d(4),
        ReLU(),
        Conv2d(4, 6, 3, stride=2, bias=False),
        BatchNorm2d(6),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(24, 8, bias=False),
        BatchNorm1d(8),
        ReLU(),
        Linear(8, 3),
        BatchNorm1d(3),
    )


# ---------------------------------------------------------- hand-worked folds
def test_conv_bn_folded_by_hand():
    # s = gamma / sqrt(var + eps) = 3 / sqrt(3 + 1) = 1.5
    # W' = 1.5 * [[1, 2], [3, 4]] = [[1.5, 3], [4.5, 6]]
    # b' = s * (b - mean) + beta = 1.5 * (0.5 - 1.5) + 1 = -0.5
    conv = Conv2d(1, 1, 2)
    conv.weight.data = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float32)
    conv.bias.data = np.array([0.5], dtype=np.float32)
    bn = BatchNorm2d(1, eps=1.0)
    set_bn(bn, [3.0], [1.0], [1.5], [3.0])
    model = Sequential(conv, bn).eval()
    folded = fold_batchnorm(model)
    assert len(folded) == 1 and isinstance(folded[0], Conv2d)
    np.testing.assert_array_equal(folded[0].weight.data, [[[[1.5, 3.0], [4.5, 6.0]]]])
    np.testing.assert_array_equal(folded[0].bias.data, [-0.5])
    assert folded[0].weight.data.dtype == np.float32
    # x = [[1, 0], [0, 1]]: conv gives 1 + 4 + 0.5 = 5.5; BN (5.5 - 1.5) / 2 * 3 + 1 = 7
    x = np.array([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=np.float32)
    assert outputs(model, x).item() == 7.0
    assert outputs(folded, x).item() == 7.0


def test_linear_without_bias_gets_one_by_hand():
    # s = 0.5 / sqrt(0.75 + 0.25) = 0.5; W' = [[0.5, -1]]; b' = 0.5 * (0 - 1) + 0.25 = -0.25
    lin = Linear(2, 1, bias=False)
    lin.weight.data = np.array([[1.0, -2.0]], dtype=np.float32)
    bn = BatchNorm1d(1, eps=0.25)
    set_bn(bn, [0.5], [0.25], [1.0], [0.75])
    model = Sequential(lin, bn).eval()
    folded = fold_batchnorm(model)
    new = folded[0]
    assert isinstance(new, Linear) and new.bias is not None
    assert (new.in_features, new.out_features) == (2, 1)
    np.testing.assert_array_equal(new.weight.data, [[0.5, -1.0]])
    np.testing.assert_array_equal(new.bias.data, [-0.25])
    assert list(folded.state_dict()) == ["0.weight", "0.bias"]
    assert lin.bias is None  # the input model is untouched
    x = np.array([[2.0, 1.0], [0.0, 3.0]], dtype=np.float32)  # (2 - 2 - 1) * 0.5 + 0.25 = -0.25
    np.testing.assert_array_equal(outputs(folded, x), outputs(model, x))
    np.testing.assert_array_equal(outputs(folded, x), [[-0.25], [-3.25]])


# ------------------------------------------------------------ random models
def test_conv_and_linear_models_equal_in_float64():
    tinynet.manual_seed(0)
    model = conv_bn_model().astype(np.float64)
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, size=(32, 2, 9, 9))
    warm_up(model, x)
    assert not np.allclose(model[1].running_var, 1.0)  # the statistics moved
    folded = fold_batchnorm(model)
    assert [type(m).__name__ for m in folded] == [
        "Conv2d",
        "ReLU",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Linear",
    ]
    assert folded[0].weight.data.dtype == np.float64
    x_test = rng.normal(1.0, 2.0, size=(16, 2, 9, 9))
    expected = outputs(model, x_test)
    got = outputs(folded, x_test)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_float32_model_equal_to_float32_rounding():
    tinynet.manual_seed(2)
    model = conv_bn_model()
    x = np.random.default_rng(3).normal(0.5, 1.0, size=(32, 2, 9, 9)).astype(np.float32)
    warm_up(model, x)
    folded = fold_batchnorm(model)
    expected, got = outputs(model, x), outputs(folded, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_input_model_untouched_and_copy_independent():
    tinynet.manual_seed(0)
    model = conv_bn_model()
    warm_up(model, np.random.default_rng(0).normal(size=(16, 2, 9, 9)).astype(np.float32))
    before = model.state_dict()
    calls = []
    model[2].register_forward_hook(lambda m, x, out: calls.append(1))
    model(np.zeros((2, 2, 9, 9), dtype=np.float32))  # gradients enabled: every layer has a cache
    assert calls == [1] and model[0].cache is not None
    folded = fold_batchnorm(model)
    after = model.state_dict()
    assert list(before) == list(after)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert len(model) == 13 and isinstance(model[1], BatchNorm2d)
    # Forward hooks and caches are not carried over; the model keeps its own.
    assert all(m.cache is None for m in folded.modules())
    outputs(folded, np.zeros((1, 2, 9, 9), dtype=np.float32))
    assert calls == [1]
    outputs(model, np.zeros((1, 2, 9, 9), dtype=np.float32))
    assert calls == [1, 1]
    assert not folded.training and not folded[0].training


def test_index_map_and_state_dict_keys():
    model = conv_bn_model().eval()
    assert folded_index_map(model) == {
        0: 0,
        1: 0,
        2: 1,
        3: 2,
        4: 2,
        5: 3,
        6: 4,
        7: 5,
        8: 6,
        9: 6,
        10: 7,
        11: 8,
        12: 8,
    }
    keys = list(fold_batchnorm(model).state_dict())
    assert keys == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
        "6.weight",
        "6.bias",
        "8.weight",
        "8.bias",
    ]


def test_model_without_batchnorm_comes_back_equal():
    tinynet.manual_seed(0)
    model = Sequential(Flatten(), Linear(12, 5), ReLU(), Linear(5, 2, bias=False))
    folded = fold_batchnorm(model)
    assert folded is not model and folded[1] is not model[1]
    assert repr(folded) == repr(model)
    for (k1, a), (k2, b) in zip(model.state_dict().items(), folded.state_dict().items()):
        assert k1 == k2
        np.testing.assert_array_equal(a, b)
    assert folded_index_map(model) == {0: 0, 1: 1, 2: 2, 3: 3}
    folded[1].weight.data[...] = 0.0  # the copy shares no arrays with the model
    assert not np.all(model[1].weight.data == 0.0)


def test_global_rng_not_consumed():
    model = conv_bn_model().eval()
    tinynet.manual_seed(5)
    expected = tinynet.get_rng().random()
    tinynet.manual_seed(5)
    fold_batchnorm(model)
    assert tinynet.get_rng().random() == expected


# ------------------------------------------------------------------- masks
def test_mask_is_preserved_and_outputs_equal():
    tinynet.manual_seed(0)
    model = Sequential(
        Conv2d(2, 3, 3), BatchNorm2d(3), ReLU(), Flatten(), Linear(12, 4), BatchNorm1d(4)
    )
    model.astype(np.float64)
    rng = np.random.default_rng(0)
    conv_mask = rng.random(model[0].weight.shape) > 0.5
    lin_mask = rng.random(model[4].weight.shape) > 0.3
    model[0].weight.add_transform(Mask(conv_mask))
    model[4].weight.add_transform(Mask(lin_mask))
    x = rng.normal(size=(16, 2, 4, 4))
    warm_up(model, x)
    folded = fold_batchnorm(model)
    for new, mask in ((folded[0], conv_mask), (folded[3], lin_mask)):
        assert [type(t) for t in new.weight.transforms] == [Mask]
        np.testing.assert_array_equal(new.weight.transforms[0].mask, mask)
        assert np.all(new.weight.value()[~mask] == 0.0)
    np.testing.assert_allclose(outputs(folded, x), outputs(model, x), rtol=1e-10, atol=1e-12)
    # The folded model keeps the parametrize-style keys of a masked parameter.
    assert "0.parametrizations.weight.0.mask" in folded.state_dict()


class Double(Transform):
    """A test transform (not a Mask): W_eff = 2 W; also usable as an output transform."""

    def forward(self, w):
        return 2 * w

    def backward(self, d_out):
        return 2 * d_out


def test_batchnorm_output_transform_moves_to_folded_layer():
    tinynet.manual_seed(0)
    model = Sequential(Linear(3, 2), BatchNorm1d(2), ReLU()).astype(np.float64)
    model[1].add_output_transform(Double())
    x = np.random.default_rng(0).normal(size=(8, 3))
    warm_up(model, x)
    folded = fold_batchnorm(model)
    assert [type(t) for t in folded[0].output_transforms] == [Double]
    np.testing.assert_allclose(outputs(folded, x), outputs(model, x), rtol=1e-12)


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "layers, match",
    [
        ((BatchNorm1d(3), Linear(3, 2)), "first layer"),
        ((Linear(4, 3), ReLU(), BatchNorm1d(3)), "follows ReLU"),
        ((Flatten(), BatchNorm1d(4)), "follows Flatten"),
        ((Conv2d(1, 3, 3), BatchNorm1d(3)), "expected BatchNorm2d"),
        ((Linear(4, 3), BatchNorm2d(3)), "expected BatchNorm1d"),
        ((Linear(4, 3), BatchNorm1d(5)), "5 features but layer 0 has 3"),
    ],
)
def test_misplaced_batchnorm_refused(layers, match):
    with pytest.raises(ValueError, match=match):
        fold_batchnorm(Sequential(*layers).eval())
    with pytest.raises(ValueError, match=match):
        folded_index_map(Sequential(*layers).eval())


def test_training_mode_refused():
    model = Sequential(Linear(4, 3), BatchNorm1d(3))
    with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
        fold_batchnorm(model)


def test_transforms_refused():
    model = Sequential(Linear(4, 3), BatchNorm1d(3)).eval()
    model[0].weight.add_transform(Double())
    with pytest.raises(ValueError, match=r"\['Double'\]: fold BatchNorm before quantizing"):
        fold_batchnorm(model)
    model = Sequential(Linear(4, 3), BatchNorm1d(3)).eval()
    model[0].bias.add_transform(Mask(np.ones(3, dtype=bool)))
    with pytest.raises(ValueError, match="bias carries transforms"):
        fold_batchnorm(model)
    model = Sequential(Linear(4, 3), BatchNorm1d(3)).eval()
    model[0].add_output_transform(Double())
    with pytest.raises(ValueError, match="output transforms"):
        fold_batchnorm(model)


def test_nested_and_non_sequential_refused():
    nested = Sequential(Sequential(Linear(4, 3), BatchNorm1d(3)), ReLU()).eval()
    with pytest.raises(ValueError, match="nested"):
        fold_batchnorm(nested)
    with pytest.raises(ValueError, match="Sequential, got Linear"):
        fold_batchnorm(Linear(3, 2))


# ------------------------------------------------------------ PyTorch parity
def test_pytorch_fuse_conv_bn_eval_and_fuse_linear_bn_eval():
    torch = pytest.importorskip("torch")
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    tinynet.manual_seed(0)
    model = Sequential(
        Conv2d(2, 3, 3, bias=False), BatchNorm2d(3), Flatten(), Linear(12, 4), BatchNorm1d(4)
    )
    model.astype(np.float64)
    warm_up(model, np.random.default_rng(0).normal(1.0, 2.0, size=(16, 2, 4, 4)))
    folded = fold_batchnorm(model)

    def to_torch(layer, bn):
        if isinstance(layer, Conv2d):
            t_layer = torch.nn.Conv2d(2, 3, 3, bias=False).double()
        else:
            t_layer = torch.nn.Linear(12, 4).double()
        t_bn = getattr(torch.nn, type(bn).__name__)(bn.num_features).double()
        state = {k: torch.from_numpy(np.asarray(v)) for k, v in layer.state_dict().items()}
        t_layer.load_state_dict(state)
        t_bn.load_state_dict(
            {k: torch.from_numpy(np.asarray(v)) for k, v in bn.state_dict().items()}
        )
        return t_layer.eval(), t_bn.eval()

    conv, bn2 = to_torch(model[0], model[1])
    fused_conv = fuse_conv_bn_eval(conv, bn2)
    np.testing.assert_allclose(
        folded[0].weight.data, fused_conv.weight.detach().numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(folded[0].bias.data, fused_conv.bias.detach().numpy(), rtol=1e-12)
    lin, bn1 = to_torch(model[3], model[4])
    fused_lin = fuse_linear_bn_eval(lin, bn1)
    np.testing.assert_allclose(folded[2].weight.data, fused_lin.weight.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(folded[2].bias.data, fused_lin.bias.detach().numpy(), rtol=1e-12)


# ------------------------------------------------------ quantize_weight_array
def test_quantize_weight_array_by_hand_per_channel_and_per_tensor():
    # 4 bits narrow: integers -7..7. Row 0: scale = 0.7 / 7 = 0.1, q = [-7, 3.3 -> 3, 1.2 -> 1].
    # Row 1: scale = 0.14 / 7 = 0.02, q = [7, -2.25 -> -2, 3.3 -> 3].
    w = np.array([[-0.7, 0.33, 0.12], [0.14, -0.045, 0.066]], dtype=np.float32)
    w_hat, scale, zp = quantize_weight_array(w, 4, narrow_range=True)
    np.testing.assert_allclose(scale, [0.1, 0.02], rtol=1e-6)
    np.testing.assert_array_equal(zp, [0, 0])
    np.testing.assert_allclose(w_hat, [[-0.7, 0.3, 0.1], [0.14, -0.04, 0.06]], rtol=1e-6)
    assert w_hat.dtype == np.float32 and scale.dtype == np.float32 and zp.dtype == np.int64
    # Per tensor: one scale 0.1; row 1 becomes [1.4 -> 1, -0.45 -> 0, 0.66 -> 1] * 0.1.
    w_hat, scale, zp = quantize_weight_array(w, 4, per_channel=False, narrow_range=True)
    assert scale.shape == () and float(scale) == pytest.approx(0.1)
    np.testing.assert_allclose(w_hat[1], [0.1, 0.0, 0.1], rtol=1e-6)


def test_quantize_weight_array_affine_by_hand():
    # 2-bit unsigned affine, range [-1, 2]: scale = 3 / 3 = 1, zero_point = 0 - round(-1) = 1.
    # q = round(w) + 1 = [0, 1, round(0.5) = 0 (half to even) + 1, 3]; w_hat = q - 1.
    w_hat, scale, zp = quantize_weight_array(
        [-1.0, 0.0, 0.5, 2.0], 2, per_channel=False, symmetric=False
    )
    assert float(scale) == 1.0 and int(zp) == 1
    np.testing.assert_array_equal(w_hat, [-1.0, 0.0, 0.0, 2.0])


def test_quantize_weight_array_axis_and_agreement_with_fake_quantize():
    w = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    w_hat, scale, zp = quantize_weight_array(w, 5, axis=1)
    assert scale.shape == (5,)
    np.testing.assert_allclose(scale, np.abs(w).max(axis=0) / 15.5, rtol=1e-6)
    np.testing.assert_array_equal(w_hat, fake_quantize(w, scale, zp, -16, 15, axis=1))
    w_hat_neg, scale_neg, _ = quantize_weight_array(w, 5, axis=-1)
    np.testing.assert_array_equal(w_hat_neg, w_hat)
    np.testing.assert_array_equal(scale_neg, scale)


def test_quantize_weight_array_errors():
    w = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="axis 2 does not exist for a weight of shape"):
        quantize_weight_array(w, 8, axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        quantize_weight_array(w, 8, axis=None)
    with pytest.raises(ValueError, match="bits must lie in 2..16, got 1"):
        quantize_weight_array(w, 1)
    with pytest.raises(ValueError, match="empty"):
        quantize_weight_array(np.zeros((0, 3)), 8)


@settings(deadline=None, max_examples=40)
@given(
    seed=st.integers(0, 2**31 - 1),
    bits=st.integers(2, 16),
    per_channel=st.booleans(),
    symmetric=st.booleans(),
    narrow_range=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_quantize_weight_array_error_at_most_half_a_step(
    seed, bits, per_channel, symmetric, narrow_range, dtype
):
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(4, 3, 2)) * rng.uniform(0.01, 10, size=(4, 1, 1))).astype(dtype)
    w_hat, scale, zp = quantize_weight_array(w, bits, per_channel, symmetric, narrow_range)
    step = scale.reshape(-1, 1, 1) if per_channel else scale
    # Min-max covers every weight, so only rounding moves it: at most half a step
    # (plus float32 rounding in w * (1 / scale)).
    slack = 1e-5 * step + 4 * np.finfo(np.float32).eps * np.abs(w)
    assert np.all(np.abs(w_hat - w) <= step / 2 + slack)
    assert w_hat.dtype == dtype


# --------------------------------------------------------- bias correction
def quantized_copy(model, bits, per_channel=False):
    """A copy of ``model`` whose Linear/Conv2d weights are replaced by quantized arrays."""
    q = copy.deepcopy(model)
    for m in q:
        if isinstance(m, (Linear, Conv2d)):
            m.weight.data = quantize_weight_array(m.weight.data, bits, per_channel=per_channel)[0]
    return q


def layer_shifts(float_model, quantized_model, x):
    """Each weighted layer's mean pre-activation shift on the quantized model's own inputs."""
    shifts = {}
    with tinynet.no_grad():
        for i, (f, q) in enumerate(zip(float_model, quantized_model)):
            if isinstance(q, (Linear, Conv2d)):
                axes = (0, 2, 3) if isinstance(q, Conv2d) else (0,)
                shifts[i] = (q.forward(x) - f.forward(x)).mean(axis=axes)
            x = q(x)
    return shifts


def test_bias_correction_by_hand():
    # float y = x0 + x1; quantized y_hat = 1.5 x0 + x1; E[x] = (2, 2): shift = 0.5 * 2 = 1
    f, q = Sequential(Linear(2, 1)), Sequential(Linear(2, 1))
    f[0].weight.data[:] = [[1.0, 1.0]]
    q[0].weight.data[:] = [[1.5, 1.0]]
    f[0].bias.data[:] = 0.25
    q[0].bias.data[:] = 0.25
    x = np.array([[2.0, 0.0], [0.0, 4.0], [4.0, 2.0]], dtype=np.float32)
    shifts = bias_correction(f, q, x)
    assert list(shifts) == [0]
    np.testing.assert_allclose(shifts[0], [1.0])
    np.testing.assert_allclose(q[0].bias.data, [-0.75])
    np.testing.assert_allclose(f[0].bias.data, [0.25])  # the float model is not touched
    assert outputs(q, x).mean() == pytest.approx(outputs(f, x).mean())


@pytest.mark.parametrize("bits", [3, 4])
def test_bias_correction_on_a_random_mlp(bits):
    tinynet.manual_seed(0)
    rng = np.random.default_rng(0)
    f = Sequential(Linear(16, 64), ReLU(), Linear(64, 64), ReLU(), Linear(64, 10))
    f.astype(np.float64)
    mu = rng.normal(size=16)  # inputs with a nonzero mean, like images
    x_cal = rng.normal(size=(512, 16)) + mu
    x_new = rng.normal(size=(512, 16)) + mu  # same distribution, not used for calibration
    q = quantized_copy(f, bits)
    before = layer_shifts(f, q, x_cal)
    end_before = np.abs((outputs(q, x_cal) - outputs(f, x_cal)).mean(axis=0)).max()
    mse_before = np.mean((outputs(q, x_new) - outputs(f, x_new)) ** 2)
    weights = [m.weight.data.copy() for m in q if isinstance(m, Linear)]

    shifts = bias_correction(f, q, x_cal)

    after = layer_shifts(f, q, x_cal)
    assert sorted(shifts) == sorted(before) == [0, 2, 4]
    for i in before:
        # Each layer's mean shift per channel was there, and is gone on the calibration data.
        assert np.abs(before[i]).max() > 1e-3
        assert np.abs(after[i]).max() < 1e-9 * np.abs(before[i]).max() + 1e-14
    np.testing.assert_allclose(shifts[0], before[0], rtol=1e-12)  # first layer: same inputs
    # End to end (the float model on its own activations), the shift shrinks too,
    end_after = np.abs((outputs(q, x_cal) - outputs(f, x_cal)).mean(axis=0)).max()
    assert end_after < end_before / 3
    # and on new data the outputs come closer to the float model's.
    mse_after = np.mean((outputs(q, x_new) - outputs(f, x_new)) ** 2)
    assert mse_after < 0.8 * mse_before
    # Only biases changed.
    for w, m in zip(weights, [m for m in q if isinstance(m, Linear)]):
        np.testing.assert_array_equal(m.weight.data, w)


def test_bias_correction_on_a_conv_model_chunked():
    tinynet.manual_seed(1)
    rng = np.random.default_rng(1)
    f = Sequential(
        Conv2d(1, 6, 3), ReLU(), MaxPool2d(2), Conv2d(6, 8, 3), ReLU(), Flatten(), Linear(32, 5)
    ).astype(np.float64)
    x_cal = rng.normal(0.5, 1.0, size=(100, 1, 10, 10))
    q = quantized_copy(f, 3)
    before = layer_shifts(f, q, x_cal)
    shifts = bias_correction(f, q, x_cal, batch_size=7)  # chunks of 7 rows: same means
    after = layer_shifts(f, q, x_cal)
    assert sorted(shifts) == [0, 3, 6]
    assert shifts[3].shape == (8,)
    for i in before:
        assert np.abs(after[i]).max() < 1e-9 * np.abs(before[i]).max() + 1e-14


class FixedFakeQuant(Transform):
    """A test weight transform: min-max fake quantization with the scale fixed at creation."""

    def __init__(self, w, bits):
        self.bits = bits
        _, self.scale, self.zero_point = quantize_weight_array(w, bits, per_channel=False)

    def forward(self, w):
        q = 2 ** (self.bits - 1)
        return fake_quantize(w, self.scale, self.zero_point, -q, q - 1)

    def backward(self, d_out):
        return d_out


def test_bias_correction_with_weight_transforms_matches_quantized_arrays():
    tinynet.manual_seed(3)
    rng = np.random.default_rng(3)
    f = Sequential(Linear(8, 16), ReLU(), Linear(16, 4)).astype(np.float64)
    x_cal = rng.normal(1.0, 1.0, size=(64, 8))
    q_arrays = quantized_copy(f, 3)
    q_transforms = copy.deepcopy(f)
    for m in q_transforms:
        if isinstance(m, Linear):
            m.weight.add_transform(FixedFakeQuant(m.weight.data, 3))
    s_arrays = bias_correction(f, q_arrays, x_cal)
    s_transforms = bias_correction(f, q_transforms, x_cal)
    for i in (0, 2):
        np.testing.assert_allclose(s_transforms[i], s_arrays[i], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(q_transforms[i].bias.data, q_arrays[i].bias.data, rtol=1e-12)
    # The latent weights keep their float values; the transform still quantizes them.
    np.testing.assert_array_equal(q_transforms[0].weight.data, f[0].weight.data)


def test_bias_correction_selected_layers_and_modes_restored():
    tinynet.manual_seed(0)
    f = Sequential(Linear(4, 6), BatchNorm1d(6), ReLU(), Linear(6, 3))
    q = quantized_copy(f, 4)
    f.train()
    q.train()
    running = q[1].running_mean.copy()
    bias0 = q[0].bias.data.copy()
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    shifts = bias_correction(f, q, x, layers=["3"])
    assert list(shifts) == [3]
    np.testing.assert_array_equal(q[0].bias.data, bias0)  # layer 0 not corrected
    np.testing.assert_array_equal(q[1].running_mean, running)  # ran in eval mode
    assert f.training and q.training and q[1].training


def test_bias_correction_on_a_trained_folded_model():
    """Fold, quantize to 3-bit per-tensor weights, correct: outputs closer to float on held-out."""
    data = tinynet.data.load_mnist_mini()
    x_train, y_train = data.x_train[:2000], data.y_train[:2000]
    tinynet.manual_seed(0)
    model = Sequential(
        Flatten(), Linear(784, 32), BatchNorm1d(32), ReLU(), Linear(32, 10), BatchNorm1d(10)
    )
    opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tinynet.fit(model, (x_train, y_train), CrossEntropyLoss(), opt, epochs=1, progress=False)
    model.eval()
    f = fold_batchnorm(model)
    x_new = data.x_heldout[:500]
    np.testing.assert_allclose(outputs(f, x_new), outputs(model, x_new), rtol=1e-4, atol=1e-4)
    q = quantized_copy(f, 3)
    mse_before = np.mean((outputs(q, x_new) - outputs(f, x_new)) ** 2)
    bias_correction(f, q, data.x_train[2000:2500])
    mse_after = np.mean((outputs(q, x_new) - outputs(f, x_new)) ** 2)
    assert mse_after < mse_before


def test_bias_correction_errors():
    f = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
    x = np.zeros((5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="same layers"):
        bias_correction(f, Sequential(Linear(4, 3), Linear(3, 2)), x)
    with pytest.raises(ValueError, match=r"weight shapes differ, \(2, 3\)"):
        bias_correction(f, Sequential(Linear(4, 3), ReLU(), Linear(3, 3)), x)
    q = copy.deepcopy(f)
    with pytest.raises(ValueError, match="'1', not the index of a Linear or Conv2d"):
        bias_correction(f, q, x, layers=["1"])
    with pytest.raises(ValueError, match="not the index"):
        bias_correction(f, q, x, layers=[7])
    with pytest.raises(ValueError, match="at least one example"):
        bias_correction(f, q, np.zeros((0, 4)))
    with pytest.raises(ValueError, match="batch_size"):
        bias_correction(f, q, x, batch_size=0)
    with pytest.raises(ValueError, match="must be a tinynet Sequential"):
        bias_correction(f[0], q[0], x)
    no_bias = Sequential(Linear(4, 3, bias=False))
    with pytest.raises(ValueError, match="layer 0 has no bias to correct"):
        bias_correction(no_bias, copy.deepcopy(no_bias), x)
    q[2].bias.add_transform(Mask(np.ones(2, dtype=bool)))
    with pytest.raises(ValueError, match="layer 2's bias carries transforms"):
        bias_correction(f, q, x)


def test_agrees_with_the_fake_quantize_weight_transform():
    """The array function and fake_quant.FakeQuantize (the QAT transform) give the same weights."""
    from compression.quantization.fake_quant import FakeQuantize

    tinynet.manual_seed(4)
    f = Sequential(Conv2d(1, 3, 3), ReLU(), Flatten(), Linear(12, 4)).astype(np.float64)
    for m in (f[0], f[3]):
        fq = FakeQuantize.for_weight(m.weight.data, 4, axis=0, frozen=True)
        w_hat, scale, zp = quantize_weight_array(m.weight.data, 4, per_channel=True)
        np.testing.assert_array_equal(fq.scale, scale)
        np.testing.assert_array_equal(fq.forward(m.weight.data), w_hat)
    # Bias correction through the transform equals bias correction of the quantized arrays.
    x_cal = np.random.default_rng(4).normal(0.5, 1.0, size=(40, 1, 4, 4))
    q_arrays = quantized_copy(f, 4, per_channel=True)
    q_fq = copy.deepcopy(f)
    for m in (q_fq[0], q_fq[3]):
        m.weight.add_transform(FakeQuantize.for_weight(m.weight.data, 4, axis=0))
    s_arrays = bias_correction(f, q_arrays, x_cal)
    s_fq = bias_correction(f, q_fq, x_cal)
    for i in (0, 3):
        np.testing.assert_allclose(s_fq[i], s_arrays[i], rtol=1e-12, atol=1e-15)
