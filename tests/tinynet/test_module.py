"""Module and Sequential: registration, traversal, modes, state_dict, hooks."""

import numpy as np
import pytest

import tinynet
from tinynet import Flatten, Linear, Module, Parameter, ReLU, Sequential


def small_mlp():
    tinynet.manual_seed(0)
    return Sequential(Flatten(), Linear(6, 5), ReLU(), Linear(5, 3))


def test_state_dict_keys_follow_pytorch_naming_and_order():
    model = small_mlp()
    assert list(model.state_dict()) == ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert [name for name, _ in model.named_parameters()] == list(model.state_dict())
    assert sum(p.size for p in model.parameters()) == 6 * 5 + 5 + 5 * 3 + 3


def test_state_dict_holds_copies():
    model = small_mlp()
    state = model.state_dict()
    state["1.weight"][:] = 7.0
    assert not np.any(model[1].weight.data == 7.0)


def test_indexing_slicing_iteration_and_len():
    model = small_mlp()
    assert isinstance(model[1], Linear) and len(model) == 4
    assert isinstance(model[-1], Linear)
    head = model[:2]
    assert isinstance(head, Sequential) and len(head) == 2
    assert head[1] is model[1]  # slices share modules
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear", "ReLU", "Linear"]
    out = head(np.ones((2, 1, 2, 3), dtype=np.float32))
    assert out.shape == (2, 5)


def test_sequential_refuses_non_modules():
    with pytest.raises(TypeError, match="argument 1"):
        Sequential(ReLU(), "relu")


def test_train_and_eval_reach_every_descendant():
    model = Sequential(Sequential(ReLU()), ReLU())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_load_state_dict_round_trip_and_errors():
    a, b = small_mlp(), small_mlp()
    tinynet.manual_seed(1)
    b = Sequential(Flatten(), Linear(6, 5), ReLU(), Linear(5, 3))
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    state = a.state_dict()
    del state["3.bias"]
    with pytest.raises(ValueError, match="missing keys \\['3.bias'\\]"):
        b.load_state_dict(state)
    state = a.state_dict()
    state["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match="unexpected keys \\['extra'\\]"):
        b.load_state_dict(state)
    b.load_state_dict(state, strict=False)
    state = a.state_dict()
    state["1.weight"] = np.zeros((6, 5))
    with pytest.raises(ValueError, match=r"'1.weight' expected shape \(5, 6\), got \(6, 5\)"):
        b.load_state_dict(state)


def test_load_state_dict_keeps_the_model_dtype():
    a = small_mlp()
    state = {k: v.astype(np.float64) for k, v in a.state_dict().items()}
    a.load_state_dict(state)
    assert a[1].weight.data.dtype == np.float32


def test_forward_hook_sees_and_may_replace_output():
    model = small_mlp()
    seen = []
    handle = model[2].register_forward_hook(lambda m, x, out: seen.append(out.shape))
    model(np.ones((2, 6), dtype=np.float32))
    assert seen == [(2, 5)]
    handle.remove()
    model(np.ones((2, 6), dtype=np.float32))
    assert seen == [(2, 5)]
    model[3].register_forward_hook(lambda m, x, out: out * 0)
    assert np.all(model(np.ones((1, 6), dtype=np.float32)) == 0)


def test_first_layers_skip_the_input_gradient_when_nobody_needs_it():
    model = small_mlp()
    model.requires_input_grad = False
    x = np.ones((2, 6), dtype=np.float32)
    out = model(x)
    assert not model[0].requires_input_grad and not model[1].requires_input_grad
    assert model[2].requires_input_grad and model[3].requires_input_grad
    assert model.backward(np.ones_like(out)) is None
    assert model[1].weight.grad is not None  # parameters still get their gradient
    model.requires_input_grad = True
    out = model(x)
    assert model.backward(np.ones_like(out)).shape == (2, 6)


def test_astype_converts_parameters_and_float_buffers_only():
    model = Sequential(Linear(3, 2), tinynet.BatchNorm1d(2))
    model.astype(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model[1].running_mean.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64


def test_zero_grad_resets_every_parameter():
    model = small_mlp()
    out = model(np.ones((2, 6), dtype=np.float32))
    model.backward(np.ones_like(out))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_subclass_must_call_super_init():
    class Broken(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Broken()


def test_reassigning_an_attribute_keeps_one_registration():
    m = Module()
    m.w = Parameter(np.zeros(1))
    m.w = Parameter(np.ones(1))
    assert [n for n, _ in m.named_parameters()] == ["w"]
    m.w = None
    assert list(m.named_parameters()) == []


def test_repr_nests_children():
    text = repr(small_mlp())
    assert text.startswith("Sequential(") and "(1): Linear" in text
