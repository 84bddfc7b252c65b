"""tinynet.init: PyTorch's initialisers (gains, fans, bounds, distributions)."""

import math

import numpy as np
import pytest

import tinynet
from tinynet import Parameter, init


# ------------------------------------------------------------------ gains
@pytest.mark.parametrize(
    ("nonlinearity", "param", "expected"),
    [
        ("linear", None, 1.0),
        ("conv2d", None, 1.0),
        ("conv_transpose3d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5.0 / 3.0),
        ("relu", None, math.sqrt(2.0)),
        ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01**2))),
        ("leaky_relu", 0, math.sqrt(2.0)),
        ("leaky_relu", math.sqrt(5), math.sqrt(1.0 / 3.0)),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain_known_values(nonlinearity, param, expected):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name in ["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    for slope in [0, 0.2, math.sqrt(5)]:
        assert init.calculate_gain("leaky_relu", slope) == pytest.approx(
            torch.nn.init.calculate_gain("leaky_relu", slope)
        )


def test_bad_nonlinearity_is_named():
    with pytest.raises(ValueError, match="'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "steep")
    with pytest.raises(ValueError, match="'gelu'"):
        init.kaiming_uniform_(np.zeros((3, 4)), nonlinearity="gelu")


# ------------------------------------------------------------------- fans
def test_fan_of_linear_and_conv_shapes():
    assert init.fan_in_and_fan_out((300, 784)) == (784, 300)
    assert init.fan_in_and_fan_out(np.zeros((300, 784))) == (784, 300)
    # conv (out_channels, in_channels, kh, kw): each output sums in * kh * kw values
    assert init.fan_in_and_fan_out(np.zeros((16, 6, 5, 5))) == (6 * 25, 16 * 25)
    assert init.fan_in_and_fan_out(Parameter(np.zeros((20, 1, 5, 3)))) == (15, 300)
    assert init._calculate_fan_in_and_fan_out is init.fan_in_and_fan_out


def test_fan_matches_torch():
    torch = pytest.importorskip("torch")
    for shape in [(3, 7), (16, 6, 5, 5), (4, 2, 3)]:
        expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        assert init.fan_in_and_fan_out(shape) == expected


def test_fan_needs_two_dimensions():
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(5,\)"):
        init.fan_in_and_fan_out(np.zeros(5))


def test_bad_mode_is_named():
    with pytest.raises(ValueError, match="'fan_avg'"):
        init.kaiming_normal_(np.zeros((3, 4)), mode="fan_avg")


# ---------------------------------------------------------- distributions
def test_uniform_and_normal_statistics():
    w = np.empty((400, 500))
    init.uniform_(w, -2.0, 3.0, rng=0)
    assert w.min() >= -2.0 and w.max() <= 3.0
    assert w.mean() == pytest.approx(0.5, abs=0.01)
    assert w.std() == pytest.approx(5.0 / math.sqrt(12.0), rel=0.01)
    init.normal_(w, mean=1.0, std=0.5, rng=1)
    assert w.mean() == pytest.approx(1.0, abs=0.005)
    assert w.std() == pytest.approx(0.5, rel=0.01)


def test_zeros_ones_constant_in_place_on_parameter():
    p = Parameter(np.full((2, 3), 7.0, dtype=np.float32))
    data = p.data
    assert init.zeros_(p) is p
    assert p.data is data and np.all(data == 0.0) and data.dtype == np.float32
    init.ones_(p)
    assert np.all(p.data == 1.0)
    init.constant_(p, 0.25)
    assert np.all(p.data == 0.25)


def test_kaiming_uniform_bound_and_std():
    fan_in = 200
    w = np.empty((500, fan_in))
    init.kaiming_uniform_(w, nonlinearity="relu", rng=0)
    bound = math.sqrt(6.0 / fan_in)  # sqrt(3) * sqrt(2) / sqrt(fan_in)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.999 * bound  # the whole range is used
    assert w.std() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.01)


def test_kaiming_fan_out_mode():
    w = np.empty((100, 400))
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", rng=0)
    assert w.std() == pytest.approx(math.sqrt(2.0 / 100), rel=0.01)
    assert w.mean() == pytest.approx(0.0, abs=0.003)


def test_kaiming_default_is_leaky_relu_with_a_zero():
    # a=0 with the default nonlinearity "leaky_relu" is He's ReLU init.
    w = np.empty((300, 150))
    init.kaiming_normal_(w, rng=0)
    assert w.std() == pytest.approx(math.sqrt(2.0 / 150), rel=0.01)


def test_xavier_bound_and_std_for_conv_shape():
    w = np.empty((64, 32, 3, 3))
    fan_in, fan_out = 32 * 9, 64 * 9
    init.xavier_uniform_(w, gain=2.0, rng=0)
    bound = 2.0 * math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.999 * bound
    init.xavier_normal_(w, rng=0)
    assert w.std() == pytest.approx(math.sqrt(2.0 / (fan_in + fan_out)), rel=0.01)


def test_float32_is_preserved_and_filled_in_place():
    w = np.zeros((30, 40), dtype=np.float32)
    for fn in [init.kaiming_uniform_, init.kaiming_normal_, init.xavier_uniform_]:
        out = fn(w, rng=0)
        assert out is w and w.dtype == np.float32 and np.all(w != 0)


def test_integer_arrays_are_refused():
    with pytest.raises(TypeError, match="int64"):
        init.uniform_(np.zeros((2, 2), dtype=np.int64))


def test_zero_size_is_a_no_op():
    w = np.empty((0, 5))
    assert init.kaiming_uniform_(w) is w


# ------------------------------------------------------------ layer default
def test_pytorch_default_bounds_and_order():
    fan_in = 64
    w = Parameter(np.zeros((1000, fan_in), dtype=np.float32))
    b = Parameter(np.zeros(1000, dtype=np.float32))
    init.pytorch_default_(w, b, rng=np.random.default_rng(3))
    bound = 1.0 / math.sqrt(fan_in)  # = 0.125 exactly
    assert w.data.dtype == np.float32 and b.data.dtype == np.float32
    assert np.abs(w.data).max() <= bound and np.abs(b.data).max() <= bound
    assert np.abs(w.data).max() > 0.999 * bound
    assert w.data.std() == pytest.approx(bound / math.sqrt(3.0), rel=0.01)
    # weight first, then bias, from one stream
    rng = np.random.default_rng(3)
    w_ref = rng.uniform(-bound, bound, size=(1000, fan_in)).astype(np.float32)
    b_ref = rng.uniform(-bound, bound, size=1000).astype(np.float32)
    np.testing.assert_allclose(w.data, w_ref, rtol=1e-6)
    np.testing.assert_array_equal(b.data, b_ref)


def test_pytorch_default_uses_conv_fan_in_and_global_rng():
    w = np.zeros((8, 3, 5, 5), dtype=np.float32)
    b = np.zeros(8, dtype=np.float32)
    tinynet.manual_seed(11)
    init.pytorch_default_(w, b)
    first = (w.copy(), b.copy())
    assert np.abs(w).max() <= 1.0 / math.sqrt(75) and np.abs(b).max() <= 1.0 / math.sqrt(75)
    tinynet.manual_seed(11)
    init.pytorch_default_(w, b)
    np.testing.assert_array_equal(w, first[0])
    np.testing.assert_array_equal(b, first[1])


def test_pytorch_default_matches_torch_bounds():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.Linear(50, 2000)
    ours = np.zeros((2000, 50))
    init.pytorch_default_(ours, rng=0)
    # Same distribution (not the same numbers): same bound and std.
    theirs = layer.weight.detach().numpy()
    assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=1e-3)
    assert ours.std() == pytest.approx(float(theirs.std()), rel=0.02)
