"""The gradient checker itself: it must pass correct gradients and catch wrong ones."""

import numpy as np
import pytest

from tinynet import Module, Parameter, gradcheck
from tinynet.gradcheck import GradcheckError, check_loss, numerical_gradient


def test_numerical_gradient_of_known_function():
    x = np.array([0.0, 0.5, 1.0, -2.0])
    g = numerical_gradient(np.sin, x.copy(), np.ones(4))
    np.testing.assert_allclose(g, np.cos(x), rtol=1e-8)


def test_passes_a_correct_derivative():
    report = gradcheck(np.sin, np.linspace(-2, 2, 7), backward=lambda x, dout: dout * np.cos(x))
    assert report["input"] < 1e-6


def test_fails_on_a_wrong_derivative_naming_index_and_values():
    # d/dx x**3 is 3x**2; claim 2x**2 instead: the check must fail and say where.
    x = np.array([0.5, 1.0, 2.0])
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda z: z**3, x, backward=lambda z, dout: dout * 2 * z**2)
    message = str(info.value)
    assert "input at index (0,)" in message
    assert "analytic" in message and "numeric" in message


def test_a_function_check_needs_a_backward():
    with pytest.raises(TypeError, match="backward"):
        gradcheck(np.sin, np.zeros(2))


class Square(Module):
    """y = w * x**2 elementwise; dy/dx = 2 w x, dy/dw = sum over batch of x**2."""

    def __init__(self, n, wrong=False):
        super().__init__()
        self.w = Parameter(np.linspace(0.5, 1.5, n))
        self.wrong = wrong

    def forward(self, x):
        self.cache = x
        return self.w.value() * x**2

    def backward(self, dout):
        x = self.cache
        self.w.backward((dout * x**2).sum(axis=0))
        factor = 3.0 if self.wrong else 2.0  # the bug: 3 instead of 2
        return dout * factor * self.w.value() * x


def test_module_check_passes_and_reports_every_tensor():
    rng = np.random.default_rng(0)
    report = gradcheck(Square(4), rng.standard_normal((3, 4)))
    assert set(report) == {"input", "w"}


def test_module_check_catches_a_wrong_input_gradient():
    rng = np.random.default_rng(0)
    with pytest.raises(GradcheckError, match="input"):
        gradcheck(Square(4, wrong=True), rng.standard_normal((3, 4)))


def test_module_check_leaves_the_original_untouched():
    m = Square(3)
    before = m.w.data.copy()
    gradcheck(m, np.ones((2, 3)))
    assert m.w.data.dtype == before.dtype and m.w.grad is None
    np.testing.assert_array_equal(m.w.data, before)


def test_sampling_checks_at_most_max_checks_entries():
    calls = []

    def f(z):
        calls.append(1)
        return z * 2.0

    gradcheck(f, np.zeros(1000), backward=lambda z, d: 2.0 * d, max_checks=10)
    assert len(calls) == 1 + 2 * 10  # one forward, two per checked entry


class HalfSquaredLoss:
    def __call__(self, outputs, targets):
        self.cache = outputs - targets
        return float(0.5 * np.sum(self.cache**2))

    def backward(self):
        return self.cache


def test_check_loss_on_a_known_loss():
    rng = np.random.default_rng(1)
    assert (
        check_loss(HalfSquaredLoss(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))
        < 1e-6
    )
