"""Flatten: shapes as torch.nn.Flatten, backward reshapes back."""

import numpy as np
import pytest

from tinynet import Flatten, no_grad
from tinynet.gradcheck import gradcheck


def test_default_flattens_all_but_the_batch_axis():
    flat = Flatten()
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    out = flat(x)
    assert out.shape == (2, 12) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], np.arange(12, 24))  # row-major (C, H, W) order
    dx = flat.backward(np.arange(24, dtype=np.float32).reshape(2, 12))
    assert dx.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(dx, x)
    assert repr(flat) == "Flatten(start_dim=1, end_dim=-1)"


@pytest.mark.parametrize(
    ("start", "end", "shape", "expected"),
    [
        (1, -1, (4, 7), (4, 7)),
        (0, -1, (2, 3, 4), (24,)),
        (1, 2, (2, 3, 4, 5), (2, 12, 5)),
        (-3, -2, (2, 3, 4, 5), (2, 12, 5)),
        (2, 2, (2, 3, 4), (2, 3, 4)),
    ],
)
def test_shapes_match_torch_rules(start, end, shape, expected):
    flat = Flatten(start, end)
    out = flat(np.zeros(shape))
    assert out.shape == expected
    assert flat.backward(np.ones(expected)).shape == shape


def test_shapes_match_torch():
    torch = pytest.importorskip("torch")
    for start, end, shape in [(1, -1, (2, 3, 4, 5)), (0, 1, (2, 3, 4)), (-2, -1, (6, 5, 4))]:
        expected = tuple(torch.nn.Flatten(start, end)(torch.zeros(shape)).shape)
        assert Flatten(start, end)(np.zeros(shape)).shape == expected


def test_gradcheck():
    gradcheck(Flatten(), np.random.default_rng(0).standard_normal((2, 3, 2, 2)))


def test_bad_dimensions_are_named():
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        Flatten()(np.zeros(5))
    with pytest.raises(ValueError, match="start_dim"):
        Flatten(2, 1)(np.zeros((2, 3, 4)))
    flat = Flatten()
    flat(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"dout of shape \(2, 12\), got \(2, 3, 4\)"):
        flat.backward(np.zeros((2, 3, 4)))


def test_no_grad_and_requires_input_grad():
    flat = Flatten()
    with no_grad():
        flat(np.zeros((2, 3, 4)))
    assert flat.cache is None
    with pytest.raises(RuntimeError, match="no_grad"):
        flat.backward(np.zeros((2, 12)))
    flat(np.zeros((2, 3, 4)))
    flat.requires_input_grad = False
    assert flat.backward(np.zeros((2, 12))) is None
