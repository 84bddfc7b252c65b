"""quantization.fake_quant and quantization.apply: fake-quantized weights and activations, PTQ, QAT."""

import copy

import numpy as np
import pytest

import tinynet
from compression.quantization.affine import fake_quantize, qparams, ste_mask
from compression.quantization.apply import (
    activation_targets,
    bit_widths,
    freeze_quantizers,
    prepare_qat,
    quantize_activations,
    quantize_weights,
    strip_quantization,
)
from compression.quantization.fake_quant import ActivationQuantize, FakeQuantize
from compression.quantization.observers import MinMaxObserver, MovingAverageMinMaxObserver
from tinynet.transforms import TRANSFORM_TYPES

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 6)).astype(np.float32)


def mlp(seed=0):
    tinynet.manual_seed(seed)
    return tinynet.Sequential(
        tinynet.Flatten(), tinynet.Linear(8, 16), tinynet.ReLU(), tinynet.Linear(16, 3)
    )


def outputs(model, x):
    model.eval()
    with tinynet.no_grad():
        return model(x)


X = RNG.standard_normal((64, 8)).astype(np.float32)


# ------------------------------------------------------------ FakeQuantize
def test_fake_quantize_per_channel_from_min_max_each_pass():
    p = tinynet.Parameter(W.copy())
    fq = p.add_transform(FakeQuantize(4, axis=0, channels=4))
    scale, zero_point = qparams(W.min(axis=1), W.max(axis=1), 4, symmetric=True)
    np.testing.assert_array_equal(p.value(), fake_quantize(W, scale, zero_point, -8, 7, axis=0))
    np.testing.assert_array_equal(fq.scale, scale)
    p.data = 2 * W  # not frozen: the next pass recomputes the scale
    p.value()
    np.testing.assert_array_equal(fq.scale, 2 * scale)


def test_frozen_scales_stay_and_the_ste_passes_only_inside():
    fq = FakeQuantize.for_weight(W, 3, axis=None, frozen=True)  # per tensor, 3 bits: -4..3
    scale = float(fq.scale)
    assert scale == float(qparams(W.min(), W.max(), 3, symmetric=True)[0])
    p = tinynet.Parameter(3 * W)
    p.add_transform(fq)
    out = p.value()
    assert float(fq.scale) == scale and len(np.unique(out)) <= 8
    dout = RNG.standard_normal(W.shape).astype(np.float32)
    p.backward(dout)
    mask = ste_mask(3 * W, scale, 0, -4, 3)
    assert 0 < mask.sum() < mask.size  # some entries clip
    np.testing.assert_array_equal(p.grad, dout * mask)


def test_worked_two_bit_example():
    # 2-bit symmetric per tensor on [-1.5, 1.5]: scale 1.5 / 1.5 = 1, grid {-2, -1, 0, 1}
    p = tinynet.Parameter(np.array([-1.5, -0.4, 0.6, 1.5], dtype=np.float32))
    p.add_transform(FakeQuantize(2))
    np.testing.assert_array_equal(p.value(), [-2.0, 0.0, 1.0, 1.0])  # round(-1.5) = -2 (even)
    p.backward(np.ones(4, dtype=np.float32))
    np.testing.assert_array_equal(p.grad, [1, 1, 1, 0])  # round(1.5) = 2 > 1: clipped


def test_no_cache_under_no_grad_and_backward_without_forward_fails():
    fq = FakeQuantize()
    with tinynet.no_grad():
        fq.forward(W)
    with pytest.raises(RuntimeError, match="without a cached forward"):
        fq.backward(W)


def test_fake_quantize_matches_pytorch_weight_fake_quant():
    torch = pytest.importorskip("torch")
    o = torch.ao.quantization
    theirs = o.FakeQuantize(
        observer=o.PerChannelMinMaxObserver,
        quant_min=-8,
        quant_max=7,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )
    w = W * np.float32(1.7)
    wt = torch.from_numpy(w).requires_grad_(True)
    yt = theirs(wt)
    dout = RNG.standard_normal(w.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dout))
    p = tinynet.Parameter(w.copy())
    p.add_transform(FakeQuantize(4, axis=0, channels=4))
    np.testing.assert_array_equal(p.value(), yt.detach().numpy())
    p.backward(dout)
    np.testing.assert_array_equal(p.grad, wt.grad.numpy())


def test_from_config_sizes_the_state_and_checks_the_axis():
    fq = TRANSFORM_TYPES["FakeQuantize"].from_config(FakeQuantize(4, axis=0).get_config(), (5, 2))
    assert fq.scale.shape == (5,) and fq.zero_point.shape == (5,)
    with pytest.raises(ValueError, match="axis 2 does not exist"):
        FakeQuantize.from_config({"axis": 2}, (5, 2))
    with pytest.raises(ValueError, match="sized for 3 channels"):
        FakeQuantize(axis=0, channels=3).forward(W)


# ------------------------------------------------------ ActivationQuantize
def test_activation_range_moves_on_training_passes_only():
    aq = ActivationQuantize(8, observer_config={"averaging_constant": 0.5})
    with pytest.raises(ValueError, match="no range yet"):
        with tinynet.no_grad():
            aq.forward(np.ones(3))
    aq.forward(np.array([0.0, 2.0]))  # training pass: the first batch sets [0, 2]
    assert float(aq.observer.max_val) == 2.0
    aq.forward(np.array([0.0, 4.0]))  # 2 + 0.5 (4 - 2) = 3
    assert float(aq.observer.max_val) == 3.0
    with tinynet.no_grad():
        aq.forward(np.array([0.0, 100.0]))  # evaluation: frozen
    aq.training = False
    aq.forward(np.array([0.0, 100.0]))
    aq.training = True
    aq.disable_observer()
    out = aq.forward(np.array([0.0, 100.0, 1.0]))
    assert float(aq.observer.max_val) == 3.0
    np.testing.assert_array_equal(out, fake_quantize([0.0, 100.0, 1.0], 3 / 255, 0, 0, 255))
    np.testing.assert_array_equal(aq.backward(np.ones(3)), [1.0, 0.0, 1.0])


def test_activation_quantize_matches_pytorch_fake_quantize():
    torch = pytest.importorskip("torch")
    theirs = torch.ao.quantization.FakeQuantize()  # moving average, quint8 [0, 255]
    ours = ActivationQuantize(8)
    for seed in range(4):
        x = (np.random.default_rng(seed).standard_normal((5, 7)) * (seed + 1)).astype(np.float32)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = theirs(xt)
        yt.backward(torch.ones_like(yt))
        np.testing.assert_array_equal(ours.forward(x), yt.detach().numpy())
        np.testing.assert_array_equal(ours.backward(np.ones_like(x)), xt.grad.numpy())
    assert float(ours.qparams()[0]) == float(theirs.scale)


def test_from_observer_is_frozen_and_refuses_an_empty_observer():
    obs = MinMaxObserver()
    with pytest.raises(ValueError, match="no range yet"):
        ActivationQuantize.from_observer(obs)
    obs.observe(np.array([-1.0, 3.0]))
    aq = ActivationQuantize.from_observer(obs, 4)
    assert not aq.observer_enabled and isinstance(aq.observer, MinMaxObserver)
    assert aq.qparams()[0] == qparams(-1.0, 3.0, 4)[0]
    with pytest.raises(ValueError, match="unknown observer"):
        ActivationQuantize(observer="os.system")


def test_the_ste_flows_through_a_sequential_by_hand():
    model = mlp()
    model.train()
    aq = model[2].add_output_transform(ActivationQuantize(2))  # ReLU output on 4 levels
    x = X[:5]
    out = model(x)
    dout = RNG.standard_normal(out.shape).astype(np.float32)
    model.requires_input_grad = True
    dx = model.backward(dout)
    z = x @ model[1].weight.data.T + model[1].bias.data
    h = np.maximum(z, 0)
    scale, zero_point = aq.qparams()
    dh = (dout @ model[3].weight.data) * ste_mask(h, scale, zero_point, 0, 3)
    np.testing.assert_allclose(dx, (dh * (z > 0)) @ model[1].weight.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model[3].weight.grad, dout.T @ aq.forward(h), rtol=1e-5)


# ------------------------------------------------------------ targets, PTQ
def test_activation_targets_of_the_model_zoo():
    assert activation_targets(tinynet.models.lenet_300_100()) == ["2", "4", "5"]
    assert activation_targets(tinynet.models.lenet5_caffe()) == ["0", "2", "6", "7"]
    assert activation_targets(tinynet.models.lenet5()) == ["1", "4", "8", "10", "11"]
    bn = tinynet.Sequential(tinynet.Linear(2, 3), tinynet.BatchNorm1d(3), tinynet.Tanh())
    assert activation_targets(bn) == ["2"]


def test_post_training_quantization_of_weights_and_activations():
    model = mlp()
    reference = outputs(model, X)
    quantize_weights(model, 8)
    for layer in (model[1], model[3]):
        fq = layer.weight.transforms[0]
        assert isinstance(fq, FakeQuantize) and fq.frozen and fq.axis == 0
        error = np.abs(layer.weight.value() - layer.weight.data)
        assert np.all(error <= fq.scale[:, None] / 2 + 1e-7)
    quantize_activations(model, X[:32], 8, observer=MovingAverageMinMaxObserver)
    assert bit_widths(model) == {"1.weight": 8, "2.output": 8, "3.weight": 8, "3.output": 8}
    aq = model[2].output_transforms[0]
    assert not aq.observer_enabled and type(aq.observer) is MovingAverageMinMaxObserver
    quantized = outputs(model, X)
    assert np.abs(quantized - reference).max() < 0.05 * np.abs(reference).max()
    assert (quantized.argmax(1) == reference.argmax(1)).mean() >= 0.95


def test_sequential_calibration_sees_the_rounded_values_upstream():
    joint, sequential, by_hand = mlp(), mlp(), mlp()
    quantize_activations(joint, X[:32], 2)
    quantize_activations(sequential, X[:32], 2, sequential=True)
    first_j, first_s = joint[2].output_transforms[0], sequential[2].output_transforms[0]
    # the first target sees the same float values either way
    assert first_j.observer.max_val == first_s.observer.max_val
    # the logits' range is observed after the 2-bit hidden layer in the sequential pass
    quantize_activations(by_hand, X[:32], 2, layers=["2"])
    expected = outputs(by_hand, X[:32])
    last = sequential[3].output_transforms[0].observer
    assert last.min_val == pytest.approx(expected.min()) and last.max_val == pytest.approx(
        expected.max()
    )
    assert joint[3].output_transforms[0].observer.max_val != pytest.approx(expected.max())


def test_mixed_precision_and_refusals():
    model = mlp()
    quantize_weights(model, {"1.weight": 8, "3.weight": 5}, per_channel=False, symmetric=False)
    assert bit_widths(model) == {"1.weight": 8, "3.weight": 5}
    assert model[3].weight.transforms[0].axis is None
    with pytest.raises(ValueError, match="already quantized"):
        quantize_weights(model, 8)
    with pytest.raises(ValueError, match=r"not weights; the weights are \['1.weight'"):
        quantize_weights(mlp(), {"1.bias": 8})
    with pytest.raises(ValueError, match="bits must lie in 2..16"):
        quantize_weights(mlp(), 1)
    with pytest.raises(ValueError, match="no modules named"):
        quantize_activations(mlp(), X, layers=["7"])


# ------------------------------------------------------------------- QAT
def separable(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    return x, y


def test_prepare_qat_returns_a_twin_and_leaves_the_model_alone():
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    twin = prepare_qat(model, 4, 4, first_last_bits=8)
    assert twin is not model and not model[1].weight.transforms
    assert all(np.array_equal(a, before[k]) for k, a in model.state_dict().items())
    assert bit_widths(twin) == {"1.weight": 8, "2.output": 8, "3.weight": 8, "3.output": 8}
    deeper = tinynet.Sequential(*[tinynet.Linear(4, 4) for _ in range(4)])
    widths = bit_widths(prepare_qat(deeper, 3, 2, first_last_bits=8, per_channel=False))
    assert widths == {
        "0.weight": 8,
        "0.output": 2,
        "1.weight": 3,
        "1.output": 2,
        "2.weight": 3,
        "2.output": 8,
        "3.weight": 8,
        "3.output": 8,
    }
    same = prepare_qat(model, inplace=True)
    assert same is model and isinstance(model[1].weight.transforms[0], FakeQuantize)
    with pytest.raises(ValueError, match="method must be"):
        prepare_qat(mlp(), method="dorefa")


def test_qat_trains_with_fit_and_strips_back_to_float():
    x, y = separable()
    model = prepare_qat(mlp(), 4, 4)
    opt = tinynet.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = tinynet.fit(
        model, (x, y), tinynet.CrossEntropyLoss(), opt, 6, batch_size=32, progress=False
    )
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    freeze_quantizers(model)
    assert model[1].weight.transforms[0].frozen
    assert not model[2].output_transforms[0].observer_enabled
    quantized = outputs(model, x)
    float_model = strip_quantization(copy.deepcopy(model))
    assert not float_model[1].weight.transforms and not float_model[2].output_transforms
    np.testing.assert_array_equal(float_model[1].weight.data, model[1].weight.data)
    baked = strip_quantization(copy.deepcopy(model), bake=True)
    np.testing.assert_array_equal(baked[1].weight.data, model[1].weight.value())
    assert np.abs(outputs(baked, x) - quantized).max() > 0  # activations no longer quantized


class Double(tinynet.Transform):
    def forward(self, w):
        return 2 * w

    def backward(self, d_out):
        return 2 * d_out


def test_strip_keeps_masks_and_refuses_to_bake_other_transforms():
    model = mlp()
    keep = np.abs(model[1].weight.data) > 0.2
    model[1].weight.add_transform(tinynet.Mask(keep))
    quantize_weights(model, 4)
    scale = model[3].weight.transforms[0].scale
    strip_quantization(model, bake=True)
    assert [type(t).__name__ for t in model[1].weight.transforms] == ["Mask"]
    assert np.all(model[1].weight.data[~keep] == 0)
    q = model[3].weight.data / scale[:, None]  # baked values sit on the 4-bit grid
    np.testing.assert_allclose(q, np.round(q), atol=1e-4)
    assert np.abs(q).max() <= 8
    other = mlp()
    other[1].weight.add_transform(FakeQuantize(4))
    other[1].weight.add_transform(Double())  # a transform that is neither a quantizer nor a Mask
    with pytest.raises(ValueError, match="cannot bake 1.weight"):
        strip_quantization(other, bake=True)


def test_qat_state_dict_and_save_load_round_trip(tmp_path):
    x, y = separable(64)
    model = prepare_qat(mlp(), 4, 3, per_channel=True)
    opt = tinynet.SGD(model.parameters(), lr=0.05)
    tinynet.fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 1, progress=False)
    tinynet.save(model, tmp_path / "qat.npz")
    fresh = mlp(seed=5)
    fresh.load_state_dict(tinynet.load(tmp_path / "qat.npz"))
    assert repr(fresh[1].weight.transforms[0]) == repr(model[1].weight.transforms[0])
    aq = fresh[2].output_transforms[0]
    assert aq.get_config() == model[2].output_transforms[0].get_config()
    np.testing.assert_array_equal(outputs(fresh, x), outputs(model, x))
    state = model.state_dict()
    assert state["2.output_transforms.0.max_val"].dtype == np.float32
    assert state["1.parametrizations.weight.0.scale"].shape == (16,)


def test_power_of_two_scales_survive_save_and_load(tmp_path):
    model = quantize_weights(mlp(), 6, power_of_two=True)
    scale = model[1].weight.transforms[0].scale
    np.testing.assert_array_equal(np.exp2(np.round(np.log2(scale))), scale)  # 2^-n exactly
    free = quantize_weights(mlp(), 6)[1].weight.transforms[0].scale
    assert np.all(scale >= free) and np.all(scale < 2 * free)  # rounded up, less than 2x
    tinynet.save(model, tmp_path / "pow2.npz")
    fresh = mlp(seed=3)
    fresh.load_state_dict(tinynet.load(tmp_path / "pow2.npz"))
    np.testing.assert_array_equal(fresh[1].weight.transforms[0].scale, scale)
    assert fresh[1].weight.transforms[0].frozen
    np.testing.assert_array_equal(outputs(fresh, X), outputs(model, X))
