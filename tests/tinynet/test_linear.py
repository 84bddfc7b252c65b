"""Linear: known answers, gradient check, PyTorch parity, the module contract."""

import math

import numpy as np
import pytest

import tinynet
from tinynet import Linear, Mask, no_grad
from tinynet.gradcheck import gradcheck


def hand_layer():
    """W = [[1, 2], [3, 4], [5, 6]] (3 outputs, 2 inputs), b = [1, 0, -1]."""
    layer = Linear(2, 3).astype(np.float64)
    layer.weight.data[...] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    layer.bias.data[...] = [1.0, 0.0, -1.0]
    return layer


def test_shapes_dtype_and_default_init():
    tinynet.manual_seed(0)
    layer = Linear(784, 300)
    assert layer.weight.shape == (300, 784) and layer.bias.shape == (300,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    bound = 1.0 / math.sqrt(784)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert layer.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert repr(layer) == "Linear(in_features=784, out_features=300, bias=True)"
    assert repr(Linear(3, 2, bias=False)) == "Linear(in_features=3, out_features=2, bias=False)"


def test_default_init_is_seeded_weight_then_bias():
    tinynet.manual_seed(5)
    a = Linear(4, 3)
    tinynet.manual_seed(5)
    b = Linear(4, 3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    rng = np.random.default_rng(5)
    rng.uniform(-0.5, 0.5, size=(3, 4))  # the weight comes first
    np.testing.assert_array_equal(a.bias.data, rng.uniform(-0.5, 0.5, size=3).astype(np.float32))


def test_forward_and_backward_known_answer():
    layer = hand_layer()
    x = np.array([[1.0, -1.0], [0.0, 2.0]])
    out = layer(x)
    # row 0: [1-2+1, 3-4+0, 5-6-1] ; row 1: [4+1, 8, 12-1]
    np.testing.assert_array_equal(out, [[0.0, -1.0, -2.0], [5.0, 8.0, 11.0]])
    dout = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dx, [[11.0, 14.0], [-2.0, -2.0]])  # dout @ W
    np.testing.assert_array_equal(layer.weight.grad, [[1.0, -1.0], [0.0, 2.0], [2.0, -4.0]])
    np.testing.assert_array_equal(layer.bias.grad, [1.0, 1.0, 1.0])


def test_gradcheck():
    tinynet.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((5, 7))
    report = gradcheck(Linear(7, 4), x)
    assert set(report) == {"input", "weight", "bias"}
    gradcheck(Linear(7, 4, bias=False), x)
    gradcheck(Linear(3, 2), np.random.default_rng(2).standard_normal((2, 4, 3)))  # (*, in)


def test_float32_in_float32_out():
    layer = Linear(6, 5)
    x = np.ones((3, 6), dtype=np.float32)
    out = layer(x)
    assert out.dtype == np.float32
    dx = layer.backward(np.ones((3, 5), dtype=np.float32))
    assert dx.dtype == np.float32
    assert layer.weight.grad.dtype == np.float32 and layer.bias.grad.dtype == np.float32


def test_leading_dimensions_like_torch():
    layer = Linear(3, 2)
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    out = layer(x)
    assert out.shape == (4, 5, 2)
    np.testing.assert_allclose(out[1, 2], layer(x[1, 2][None])[0], rtol=1e-6)
    layer(x)
    assert layer.backward(np.ones((4, 5, 2), dtype=np.float32)).shape == (4, 5, 3)
    assert layer(np.ones(3, dtype=np.float32)).shape == (2,)


def test_wrong_shapes_name_expected_and_received():
    layer = Linear(784, 10)
    with pytest.raises(
        ValueError, match=r"expected input of shape \(N, 784\), got \(32, 1, 28, 28\)"
    ):
        layer(np.zeros((32, 1, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="Flatten"):
        layer(np.zeros((32, 1, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, 784\), got \(4, 100\)"):
        layer(np.zeros((4, 100)))
    layer(np.zeros((4, 784), dtype=np.float32))
    with pytest.raises(ValueError, match=r"dout of shape \(4, 10\), got \(4, 9\)"):
        layer.backward(np.zeros((4, 9), dtype=np.float32))
    with pytest.raises(ValueError, match="in_features"):
        Linear(-1, 3)


def test_no_grad_keeps_no_cache_and_backward_raises():
    layer = Linear(3, 2)
    with no_grad():
        out = layer(np.ones((2, 3), dtype=np.float32))
    assert out.shape == (2, 2)
    assert layer.cache is None
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones((2, 2), dtype=np.float32))


def test_requires_input_grad_false_still_accumulates_param_grads():
    layer = hand_layer()
    layer.requires_input_grad = False
    layer(np.array([[1.0, -1.0], [0.0, 2.0]]))
    assert layer.backward(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])) is None
    np.testing.assert_array_equal(layer.bias.grad, [1.0, 1.0, 1.0])
    assert layer.weight.grad is not None


def test_gradients_accumulate_across_backward_calls():
    layer = hand_layer()
    x = np.array([[1.0, -1.0], [0.0, 2.0]])
    dout = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    layer(x)
    layer.backward(dout)
    once = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer(x)
    layer.backward(dout)
    np.testing.assert_array_equal(layer.weight.grad, 2 * once[0])
    np.testing.assert_array_equal(layer.bias.grad, 2 * once[1])
    layer.zero_grad()
    assert layer.weight.grad is None


def test_backward_uses_the_effective_weight():
    # With a pruning mask, forward and dx use W * M and dW is masked too.
    layer = hand_layer()
    mask = np.array([[True, False], [True, True], [False, True]])
    layer.weight.add_transform(Mask(mask))
    x = np.array([[1.0, -1.0]])
    np.testing.assert_array_equal(layer(x), [[2.0, -1.0, -7.0]])
    dx = layer.backward(np.array([[1.0, 1.0, 1.0]]))
    np.testing.assert_array_equal(dx, [[4.0, 10.0]])  # column sums of W * M
    np.testing.assert_array_equal(layer.weight.grad, [[1.0, 0.0], [1.0, -1.0], [0.0, -1.0]])
    gradcheck(layer, np.random.default_rng(0).standard_normal((3, 2)))


def test_torch_parity_float64():
    torch = pytest.importorskip("torch")
    tinynet.manual_seed(0)
    ours = Linear(7, 5).astype(np.float64)
    theirs = torch.nn.Linear(7, 5).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 7))
    dout = rng.standard_normal((6, 5))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = theirs(xt)
    out_t.backward(torch.from_numpy(dout))
    out = ours(x)
    dx = ours.backward(dout)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=0, atol=1e-12)


def test_state_dict_keys_match_torch_without_bias():
    torch = pytest.importorskip("torch")
    ours = Linear(3, 2, bias=False)
    theirs = torch.nn.Linear(3, 2, bias=False)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    np.testing.assert_array_equal(theirs.weight.detach().numpy(), ours.weight.data)
