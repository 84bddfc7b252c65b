"""MaxPool2d / AvgPool2d: known answers (ties!), shapes, errors, gradient checks, PyTorch parity."""

import numpy as np
import pytest

from tinynet import AvgPool2d, MaxPool2d, no_grad
from tinynet.gradcheck import gradcheck


def test_known_answers_and_repr():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(MaxPool2d(2)(x)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(AvgPool2d(2)(x)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(MaxPool2d(3, stride=1)(x)[0, 0], [[10, 11], [14, 15]])
    assert repr(MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2))"
    assert repr(AvgPool2d((2, 3), 1)) == "AvgPool2d(kernel_size=(2, 3), stride=(1, 1))"


def test_max_pool_tie_goes_to_the_first_maximum_by_hand():
    # One 2x2 window with three equal maxima (as after quantization):
    # [[7, 7],
    #  [7, 1]]  -> the whole gradient goes to the top-left 7.
    pool = MaxPool2d(2)
    out = pool(np.array([[[[7.0, 7.0], [7.0, 1.0]]]]))
    np.testing.assert_array_equal(out, [[[[7.0]]]])
    np.testing.assert_array_equal(
        pool.backward(np.array([[[[5.0]]]])), [[[[5.0, 0.0], [0.0, 0.0]]]]
    )
    # [[0, 2], [2, 2]]: the first maximum in row-major order is (0, 1)
    pool(np.array([[[[0.0, 2.0], [2.0, 2.0]]]]))
    np.testing.assert_array_equal(
        pool.backward(np.array([[[[5.0]]]])), [[[[0.0, 5.0], [0.0, 0.0]]]]
    )


def test_avg_pool_backward_spreads_evenly():
    pool = AvgPool2d(2)
    pool(np.zeros((1, 1, 4, 4)))
    dx = pool.backward(np.array([[[[4.0, 8.0], [0.0, -4.0]]]]))
    np.testing.assert_array_equal(
        dx[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, -1, -1], [0, 0, -1, -1]]
    )


@pytest.mark.parametrize("layer", [MaxPool2d, AvgPool2d])
def test_floor_mode_shapes_and_dtype(layer):
    x = np.zeros((3, 2, 7, 5), dtype=np.float32)
    out = layer(2)(x)
    assert out.shape == (3, 2, 3, 2) and out.dtype == np.float32  # floor(7/2), floor(5/2)
    assert layer(3, 2)(x).shape == (3, 2, 3, 2)  # floor((7-3)/2)+1, floor((5-3)/2)+1
    pool = layer(2)
    pool(x)
    dx = pool.backward(np.ones((3, 2, 3, 2), dtype=np.float32))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert np.all(dx[:, :, 6, :] == 0) and np.all(dx[:, :, :, 4] == 0)  # unused edge


@pytest.mark.parametrize("layer", [MaxPool2d, AvgPool2d])
def test_errors_teach(layer):
    name = layer.__name__
    with pytest.raises(
        ValueError, match=rf"{name} expected input of shape \(N, C, H, W\), got \(28, 28\)"
    ):
        layer(2)(np.zeros((28, 28)))
    with pytest.raises(
        ValueError, match=rf"{name} input of spatial size 1x4 is smaller than the window 2x2"
    ):
        layer(2)(np.zeros((1, 1, 1, 4)))
    with pytest.raises(ValueError, match="kernel_size must be an integer >= 1"):
        layer(0)
    pool = layer(2)
    pool(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"backward expected dout of shape \(1, 1, 2, 2\)"):
        pool.backward(np.zeros((1, 1, 4, 4)))


@pytest.mark.parametrize("layer", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_gradcheck(layer, kernel, stride):
    # distinct values, so no window has a tie within eps
    x = np.random.default_rng(0).permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) * 0.1
    gradcheck(layer(kernel, stride), x, max_checks=80)


@pytest.mark.parametrize("layer", [MaxPool2d, AvgPool2d])
def test_contract_no_grad_and_no_input_grad(layer):
    pool = layer(2)
    with no_grad():
        out = pool(np.zeros((1, 1, 4, 4)))
    assert pool.cache is None
    with pytest.raises(RuntimeError, match="without a cached forward pass"):
        pool.backward(np.zeros_like(out))
    pool.requires_input_grad = False
    pool(np.zeros((1, 1, 4, 4)))
    assert pool.backward(np.zeros_like(out)) is None


@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1), ((3, 2), (2, 1))])
def test_matches_torch_with_ties(kernel, stride):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(2, 3, 8, 9)).astype(np.float64)  # many ties
    for ours, theirs in ((MaxPool2d, torch.nn.MaxPool2d), (AvgPool2d, torch.nn.AvgPool2d)):
        pool, ref = ours(kernel, stride), theirs(kernel, stride)
        tx = torch.tensor(x, requires_grad=True)
        tout = ref(tx)
        out = pool(x)
        np.testing.assert_allclose(out, tout.detach().numpy(), atol=1e-12)
        dout = rng.standard_normal(out.shape)
        tout.backward(torch.tensor(dout))
        np.testing.assert_allclose(pool.backward(dout), tx.grad.numpy(), atol=1e-12)
