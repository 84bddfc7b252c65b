"""Weight transforms: the mechanism pruning, quantization and weight sharing plug into."""

import json

import numpy as np
import pytest

import tinynet
from tinynet import SGD, Linear, Mask, Parameter, ReLU, Sequential, gradcheck, strip
from tinynet.transforms import (
    Transform,
    apply_transform_spec,
    register_transform,
    transform_spec,
)


@register_transform
class LearnedScale(Transform):
    """Test transform that owns a trainable value: W_eff = s * W.

    dL/dW = s * dL/dW_eff and dL/ds = sum(W * dL/dW_eff), the way weight
    sharing's centroids receive the sum of their weights' gradients.
    """

    param_names = ("scale",)

    def __init__(self, scale=1.0):
        self.scale = Parameter(np.array(scale, dtype=np.float32))

    def forward(self, w):
        self.cache = w
        return w * self.scale.data.astype(w.dtype)

    def backward(self, d_out):
        self.scale.backward(np.array(np.sum(d_out * self.cache), dtype=self.scale.dtype))
        return d_out * self.scale.data.astype(d_out.dtype)

    @classmethod
    def from_config(cls, config, shape):
        return cls()


def masked_mlp(seed=0):
    tinynet.manual_seed(seed)
    model = Sequential(Linear(6, 5), ReLU(), Linear(5, 3))
    mask = np.ones((5, 6), dtype=bool)
    mask[:, ::2] = False  # drop every other input column
    mask[0] = False
    model[0].weight.add_transform(Mask(mask))
    return model, mask


def test_mask_forward_zeroes_and_backward_masks_the_gradient():
    p = Parameter(np.array([[1.0, -2.0], [3.0, 4.0]]))
    p.add_transform(Mask([[True, False], [False, True]]))
    np.testing.assert_array_equal(p.value(), [[1.0, 0.0], [0.0, 4.0]])
    p.backward(np.array([[10.0, 20.0], [30.0, 40.0]]))
    np.testing.assert_array_equal(p.grad, [[10.0, 0.0], [0.0, 40.0]])
    np.testing.assert_array_equal(p.data, [[1.0, -2.0], [3.0, 4.0]])  # latent kept


def test_layer_uses_the_effective_weight():
    model, mask = masked_mlp()
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    w_eff = model[0].weight.data * mask
    expected = x @ w_eff.T + model[0].bias.data
    np.testing.assert_allclose(model[0](x), expected, rtol=1e-6)


def test_gradient_through_a_mask_is_checked_numerically():
    model, _ = masked_mlp()
    report = gradcheck(model, np.random.default_rng(1).standard_normal((3, 6)))
    assert "0.parametrizations.weight.original" in report


def test_masked_weights_stay_exactly_zero_through_training():
    model, mask = masked_mlp()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.standard_normal((8, 6)).astype(np.float32)
        out = model(x)
        opt.zero_grad()
        model.backward((out - 1.0) / len(x))  # gradient of a mean squared error / 2
        opt.step()
    assert np.all(np.isfinite(model[0].weight.data))
    w_eff = model[0].weight.value()
    assert np.all(w_eff[~mask] == 0.0)
    assert np.all(model[0].weight.grad[~mask] == 0.0)
    assert np.any(w_eff[mask] != 0.0)


def test_state_dict_uses_parametrize_keys_and_describes_the_chain():
    model, mask = masked_mlp()
    state = model.state_dict()
    assert list(state)[:3] == [
        "0.parametrizations.weight.original",
        "0.parametrizations.weight.0.mask",
        "0.bias",
    ]
    np.testing.assert_array_equal(state["0.parametrizations.weight.0.mask"], mask)
    assert state.metadata["transforms"] == {"0.weight": [{"type": "Mask", "config": {}}]}
    json.dumps(state.metadata)  # plain JSON, no code
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "0.parametrizations.weight.original"


def test_loading_rebuilds_the_chain_in_a_fresh_model():
    model, mask = masked_mlp()
    fresh = Sequential(Linear(6, 5), ReLU(), Linear(5, 3))
    fresh.load_state_dict(model.state_dict())
    assert isinstance(fresh[0].weight.transforms[0], Mask)
    np.testing.assert_array_equal(fresh[0].weight.transforms[0].mask, mask)
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_array_equal(fresh(x), model(x))


def test_transform_keys_without_a_description_are_refused():
    model, _ = masked_mlp()
    plain = dict(model.state_dict())  # a dict loses the metadata
    with pytest.raises(ValueError, match="no description of the chain"):
        Sequential(Linear(6, 5), ReLU(), Linear(5, 3)).load_state_dict(plain)


def test_plain_key_loads_into_the_latent_value_of_a_transformed_parameter():
    model, mask = masked_mlp()
    init = np.full((5, 6), 0.5, dtype=np.float32)
    state = dict(model.state_dict())
    for key in ("0.parametrizations.weight.original", "0.parametrizations.weight.0.mask"):
        del state[key]
    state["0.weight"] = init
    model.load_state_dict(state)
    np.testing.assert_array_equal(model[0].weight.data, init)
    np.testing.assert_array_equal(model[0].weight.transforms[0].mask, mask)  # mask kept


def test_strip_bakes_values_and_restores_plain_keys():
    model, mask = masked_mlp()
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    before = model(x)
    strip(model)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert np.all(model[0].weight.data[~mask] == 0.0)
    np.testing.assert_array_equal(model(x), before)
    assert transform_spec(model) == {}


def test_unknown_or_malformed_specs_are_refused():
    model = Sequential(Linear(2, 2))
    with pytest.raises(ValueError, match="unknown transform type 'os.system'"):
        apply_transform_spec(model, {"0.weight": [{"type": "os.system", "config": {}}]})
    with pytest.raises(ValueError, match="does not have"):
        apply_transform_spec(model, {"9.weight": [{"type": "Mask", "config": {}}]})
    with pytest.raises(ValueError, match="list of"):
        apply_transform_spec(model, {"0.weight": "Mask"})
    with pytest.raises(ValueError, match="must be a dict"):
        apply_transform_spec(model, ["Mask"])


def test_entries_and_configs_must_be_what_transform_spec_writes():
    model = Sequential(Linear(2, 2))
    with pytest.raises(ValueError, match="'type': str, 'config': dict"):
        apply_transform_spec(model, {"0.weight": [{"type": "Mask"}]})
    with pytest.raises(ValueError, match="'type': str, 'config': dict"):
        apply_transform_spec(model, {"0.weight": [{"type": "Mask", "config": {}, "x": 1}]})
    with pytest.raises(ValueError, match="Mask for '0.weight'.*an unknown key"):
        apply_transform_spec(model, {"0.weight": [{"type": "Mask", "config": {"k": 1}}]})
    assert model[0].weight.transforms == []
    apply_transform_spec(model, {"0.weight": [{"type": "Mask", "config": {}}]})
    assert [type(t).__name__ for t in model[0].weight.transforms] == ["Mask"]


def test_a_transform_can_own_a_trainable_value():
    tinynet.manual_seed(0)
    model = Sequential(Linear(4, 3))
    scale = model[0].weight.add_transform(LearnedScale(0.5))
    names = [n for n, _ in model.named_parameters()]
    assert names == [
        "0.parametrizations.weight.original",
        "0.parametrizations.weight.0.scale",
        "0.bias",
    ]
    assert scale.scale in model.parameters()
    report = gradcheck(model, np.random.default_rng(0).standard_normal((5, 4)))
    assert "0.parametrizations.weight.0.scale" in report
    # an optimizer moves it, with its own learning rate (parameter groups)
    opt = SGD(
        [
            {"params": [model[0].weight, model[0].bias]},
            {"params": [scale.scale], "lr": 0.01},
        ],
        lr=0.1,
    )
    x = np.ones((2, 4), dtype=np.float32)
    out = model(x)
    opt.zero_grad()
    model.backward(np.ones_like(out))
    # dL/dW_eff = dout^T x = 2 everywhere, so dL/ds = sum(W * dL/dW_eff) = 2 * sum(W)
    expected = 0.5 - 0.01 * 2.0 * float(model[0].weight.data.sum())
    opt.step()
    assert scale.scale.data == pytest.approx(expected, rel=1e-5)


def test_chains_compose_and_round_trip():
    model, mask = masked_mlp()
    model[0].weight.add_transform(LearnedScale(2.0))
    gradcheck(model, np.random.default_rng(4).standard_normal((3, 6)))
    np.testing.assert_array_equal(model[0].weight.value(), model[0].weight.data * mask * 2.0)
    fresh = Sequential(Linear(6, 5), ReLU(), Linear(5, 3))
    fresh.load_state_dict(model.state_dict())
    assert [type(t).__name__ for t in fresh[0].weight.transforms] == ["Mask", "LearnedScale"]
    assert float(fresh[0].weight.transforms[1].scale.data) == 2.0
    x = np.ones((1, 6), dtype=np.float32)
    np.testing.assert_array_equal(fresh(x), model(x))


def test_astype_reaches_transform_state():
    model = Sequential(Linear(2, 2))
    t = model[0].weight.add_transform(LearnedScale(1.0))
    model.astype(np.float64)
    assert t.scale.dtype == np.float64


# ------------------------------------------------------------ output transforms
def scaled_output_mlp(seed=0):
    tinynet.manual_seed(seed)
    model = Sequential(Linear(4, 5), ReLU(), Linear(5, 3))
    model[1].add_output_transform(LearnedScale(1.5))
    return model


def test_output_transform_applies_after_forward_without_shifting_indices():
    model = scaled_output_mlp()
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    hidden = np.maximum(model[0](x), 0)
    np.testing.assert_allclose(model(x), model[2](1.5 * hidden), rtol=1e-6)
    assert len(model) == 3 and isinstance(model[2], Linear)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.output_transforms.0.scale", "2.weight", "2.bias"]


def test_output_transform_gradient_flows_through_sequential():
    model = scaled_output_mlp()
    x = np.random.default_rng(1).standard_normal((3, 4))
    gradcheck(model, x)  # checks dx, the layers' weights and the output scale


def test_output_transforms_survive_state_dict_and_save_load(tmp_path):
    model = scaled_output_mlp()
    model[1].output_transforms[0].scale.data[...] = 0.25
    state = model.state_dict()
    assert state.metadata["output_transforms"] == {"1": [{"type": "LearnedScale", "config": {}}]}
    assert float(state["1.output_transforms.0.scale"]) == 0.25
    tinynet.save(model, tmp_path / "m.npz")
    fresh = Sequential(Linear(4, 5), ReLU(), Linear(5, 3))
    fresh.load_state_dict(tinynet.load(tmp_path / "m.npz"))
    x = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_array_equal(fresh(x), model(x))
    assert float(fresh[1].output_transforms[0].scale.data) == 0.25


def test_output_transform_of_unknown_type_is_refused():
    from tinynet.transforms import apply_output_transform_spec

    model = Sequential(Linear(2, 2))
    with pytest.raises(ValueError, match="unknown transform type 'Evil'"):
        apply_output_transform_spec(model, {"0": [{"type": "Evil", "config": {}}]})
    with pytest.raises(ValueError, match="module '7'"):
        apply_output_transform_spec(model, {"7": []})
    with pytest.raises(TypeError, match="forward and backward"):
        model[0].add_output_transform(object())
