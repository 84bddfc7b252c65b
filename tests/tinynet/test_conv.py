"""Conv2d: init, shapes and errors, known answer, gradient check, PyTorch parity, the contract."""

import math

import numpy as np
import pytest

import tinynet
from tinynet import Conv2d, Mask, no_grad
from tinynet import functional as F
from tinynet.gradcheck import gradcheck


def test_shapes_dtype_repr_and_default_init():
    tinynet.manual_seed(0)
    conv = Conv2d(3, 8, 5, padding=2)
    assert conv.weight.shape == (8, 3, 5, 5) and conv.bias.shape == (8,)
    assert conv.weight.dtype == np.float32 and conv.bias.dtype == np.float32
    bound = 1.0 / math.sqrt(3 * 5 * 5)  # fan_in = C_in * kh * kw
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert conv.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert repr(conv) == "Conv2d(3, 8, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"
    conv = Conv2d(2, 4, (3, 2), stride=(2, 1), bias=False)
    assert conv.bias is None and conv.weight.shape == (4, 2, 3, 2)
    assert repr(conv) == "Conv2d(2, 4, kernel_size=(3, 2), stride=(2, 1), bias=False)"
    assert list(conv.state_dict()) == ["weight"]


def test_default_init_draws_weight_then_bias_from_the_global_generator():
    tinynet.manual_seed(3)
    conv = Conv2d(2, 3, 2)
    rng = np.random.default_rng(3)
    bound = 1.0 / math.sqrt(8)
    w = rng.uniform(-bound, bound, size=(3, 2, 2, 2))
    b = rng.uniform(-bound, bound, size=3)
    np.testing.assert_allclose(conv.weight.data, w, rtol=1e-6)
    np.testing.assert_allclose(conv.bias.data, b, rtol=1e-6)


@pytest.mark.parametrize(
    "c_in, c_out, kernel, stride, padding, hw, out_hw",
    [
        (1, 6, 5, 1, 2, (28, 28), (28, 28)),  # LeNet-5 conv1: padding 2 keeps 28x28
        (6, 16, 5, 1, 0, (14, 14), (10, 10)),  # LeNet-5 conv2
        (3, 4, (3, 2), 2, 1, (29, 28), (15, 15)),  # floor((29+2-3)/2)+1, floor((28+2-2)/2)+1
    ],
)
def test_output_shape_formula(c_in, c_out, kernel, stride, padding, hw, out_hw):
    conv = Conv2d(c_in, c_out, kernel, stride, padding)
    out = conv(np.zeros((2, c_in) + hw, dtype=np.float32))
    assert out.shape == (2, c_out) + out_hw and out.dtype == np.float32


def test_errors_teach():
    conv = Conv2d(3, 4, 5)
    with pytest.raises(
        ValueError, match=r"Conv2d expected input of shape \(N, 3, H, W\), got \(32, 1, 28, 28\)"
    ):
        conv(np.zeros((32, 1, 28, 28), dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"Conv2d expected input of shape \(N, 3, H, W\), got \(3, 28, 28\)"
    ):
        conv(np.zeros((3, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="spatial size 4x9 .* smaller than the kernel 5x5"):
        conv(np.zeros((1, 3, 4, 9), dtype=np.float32))
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        Conv2d(0, 4, 3)
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 1"):
        Conv2d(1, 4, (3, 0))
    conv(np.zeros((2, 3, 6, 6), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.backward expected dout of shape \(2, 4, 2, 2\)"):
        conv.backward(np.zeros((2, 4, 3, 3), dtype=np.float32))


def test_forward_backward_known_answer():
    # x = 0..8 in a 3x3 grid, kernel [[1, 0], [0, -1]]: every output is x[i,j] - x[i+1,j+1] = -4
    conv = Conv2d(1, 1, 2).astype(np.float64)
    conv.weight.data[...] = [[[[1.0, 0.0], [0.0, -1.0]]]]
    conv.bias.data[...] = [10.0]
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(conv(x), np.full((1, 1, 2, 2), 6.0))
    dx = conv.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [3, 3, -2], [0, -3, -4]])
    np.testing.assert_array_equal(conv.weight.grad[0, 0], [[27, 37], [57, 67]])
    np.testing.assert_array_equal(conv.bias.grad, [10.0])


@pytest.mark.parametrize(
    "args, hw",
    [((2, 3, 3), (6, 5)), ((2, 2, (3, 2), (2, 1), (1, 2)), (7, 6)), ((1, 2, 2, 2, 0), (5, 5))],
)
def test_gradcheck(args, hw):
    tinynet.manual_seed(0)
    conv = Conv2d(*args)
    x = np.random.default_rng(1).standard_normal((2, args[0]) + hw)
    report = gradcheck(conv, x, max_checks=60)
    assert set(report) == {"input", "weight", "bias"}


def test_matches_torch_float64():
    torch = pytest.importorskip("torch")
    tinynet.manual_seed(0)
    conv = Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(2, 1)).astype(np.float64)
    ref = torch.nn.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(2, 1)).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(conv.weight.data))
        ref.bias.copy_(torch.tensor(conv.bias.data))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3, 8, 9))
    tx = torch.tensor(x, requires_grad=True)
    tout = ref(tx)
    out = conv(x)
    np.testing.assert_allclose(out, tout.detach().numpy(), atol=1e-12)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.tensor(dout))
    dx = conv.backward(dout)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, ref.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, ref.bias.grad.numpy(), atol=1e-12)


def test_first_layer_skips_dx_but_still_accumulates():
    tinynet.manual_seed(0)
    conv = Conv2d(1, 6, 5, padding=2)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    dout = np.random.default_rng(1).standard_normal((4, 6, 28, 28)).astype(np.float32)
    conv(x)
    dx = conv.backward(dout)
    assert dx.shape == x.shape and dx.dtype == np.float32
    dW, db = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv.zero_grad()
    conv.requires_input_grad = False
    conv(x)
    assert conv.backward(dout) is None
    np.testing.assert_array_equal(conv.weight.grad, dW)
    np.testing.assert_array_equal(conv.bias.grad, db)
    conv(x)
    conv.backward(dout)  # gradients accumulate
    np.testing.assert_allclose(conv.weight.grad, 2 * dW, rtol=1e-6)


def test_no_grad_keeps_no_cache():
    conv = Conv2d(1, 2, 3)
    with no_grad():
        out = conv(np.zeros((1, 1, 4, 4), dtype=np.float32))
    assert conv.cache is None
    with pytest.raises(RuntimeError, match="without a cached forward pass"):
        conv.backward(np.zeros_like(out))


def test_uses_the_effective_weight_of_a_transform():
    tinynet.manual_seed(0)
    conv = Conv2d(2, 3, 3).astype(np.float64)
    mask = np.random.default_rng(0).random(conv.weight.shape) > 0.5
    conv.weight.add_transform(Mask(mask))
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5))
    expected = F.conv2d_naive(x, conv.weight.data * mask, conv.bias.data)
    np.testing.assert_allclose(conv(x), expected, atol=1e-12)
    conv.backward(np.ones((2, 3, 3, 3)))
    assert np.all(conv.weight.grad[~mask] == 0)
    gradcheck(conv, x, max_checks=40)
