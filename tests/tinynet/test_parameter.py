"""Parameter: latent value, accumulating gradient, freezing."""

import numpy as np
import pytest

from tinynet import Parameter


def test_non_float_data_becomes_float32_and_float_dtype_is_kept():
    assert Parameter([1, 2, 3]).dtype == np.float32
    assert Parameter(np.zeros(3, dtype=np.float64)).dtype == np.float64


def test_gradient_accumulates_until_zero_grad():
    p = Parameter(np.zeros((2, 2), dtype=np.float32))
    p.backward(np.ones((2, 2), dtype=np.float32))
    p.backward(2 * np.ones((2, 2), dtype=np.float32))
    np.testing.assert_array_equal(p.grad, np.full((2, 2), 3.0))
    assert p.grad.dtype == np.float32
    p.zero_grad()
    assert p.grad is None


def test_first_backward_copies_the_gradient():
    p = Parameter(np.zeros(3))
    g = np.ones(3)
    p.backward(g)
    p.backward(g)
    np.testing.assert_array_equal(g, np.ones(3))  # caller's array untouched
    np.testing.assert_array_equal(p.grad, [2.0, 2.0, 2.0])


def test_frozen_parameter_gets_no_gradient():
    p = Parameter(np.zeros(3), requires_grad=False)
    p.backward(np.ones(3))
    assert p.grad is None


def test_gradient_of_wrong_shape_is_refused_with_both_shapes():
    p = Parameter(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        p.backward(np.zeros((3, 2)))


def test_astype_converts_data_and_grad():
    p = Parameter(np.zeros(2, dtype=np.float32))
    p.backward(np.ones(2, dtype=np.float32))
    p.astype(np.float64)
    assert p.data.dtype == np.float64 and p.grad.dtype == np.float64


def test_value_without_transforms_is_the_data_itself():
    p = Parameter(np.arange(4.0))
    assert p.value() is p.data
