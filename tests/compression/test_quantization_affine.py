"""quantization.affine: hand-worked quantizers, round-trip properties, errors, PyTorch parity."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression.quantization.affine import (
    dequantize,
    fake_quantize,
    pow2_scale,
    qparams,
    qrange,
    quantize,
    ste_mask,
)


# ----------------------------------------------------------- hand-worked
def test_qrange_of_every_kind():
    assert qrange(8) == (0, 255)
    assert qrange(8, signed=True) == (-128, 127)
    assert qrange(8, signed=True, narrow_range=True) == (-127, 127)
    assert qrange(2) == (0, 3) and qrange(2, signed=True) == (-2, 1)
    assert qrange(16, signed=True) == (-32768, 32767)
    assert qrange(4, narrow_range=True) == (1, 15)


def test_affine_8_bit_worked_example():
    scale, zero_point = qparams(-1.0, 3.0, 8)  # 4 / 255 per step, 0 at 0 - round(-63.75) = 64
    assert scale.dtype == np.float32 and zero_point.dtype == np.int64
    assert scale == np.float32(4.0) / np.float32(255.0) and zero_point == 64
    q = quantize([-1.0, 0.0, 0.1, 3.0, 9.0], scale, zero_point, 0, 255)
    np.testing.assert_array_equal(q, [0, 64, 70, 255, 255])  # 0.1 * 63.75 = 6.375 -> 6
    np.testing.assert_allclose(
        dequantize(q, scale, zero_point), np.array([-64, 0, 6, 191, 191]) * scale
    )


def test_range_is_widened_to_include_zero():
    scale, zero_point = qparams(0.5, 2.0, 8)  # [0.5, 2] -> [0, 2]
    assert scale == np.float32(2.0) / np.float32(255.0) and zero_point == 0
    scale, zero_point = qparams(-2.0, -0.5, 8)  # [-2, -0.5] -> [-2, 0]: 0 is the top level
    assert zero_point == 255


def test_symmetric_full_and_narrow():
    scale, zero_point = qparams(-1.0, 3.0, 8, symmetric=True)  # max|x| / 127.5
    assert scale == np.float32(3.0) / np.float32(127.5) and zero_point == 0
    scale, _ = qparams(-1.0, 3.0, 8, symmetric=True, narrow_range=True)  # max|x| / 127
    assert scale == np.float32(3.0) / np.float32(127.0)


def test_two_bit_affine_by_hand():
    # [-1, 2] on 0..3: scale 1, zero-point 0 - round(-1) = 1; grid {-1, 0, 1, 2}
    scale, zero_point = qparams(-1.0, 2.0, 2)
    assert scale == 1.0 and zero_point == 1
    x = [-1.4, -0.5, 0.49, 2.6, 5.0]
    q = quantize(x, scale, zero_point, 0, 3)  # round(-0.5) = -0 (half to even)
    np.testing.assert_array_equal(q, [0, 1, 1, 3, 3])
    np.testing.assert_array_equal(fake_quantize(x, scale, zero_point, 0, 3), [-1, 0, 0, 2, 2])
    # the STE passes where round(x / s) + z lies in 0..3: -1.4 -> 0 yes, 2.6 -> 4 no
    np.testing.assert_array_equal(ste_mask(x, scale, zero_point, 0, 3), [1, 1, 1, 0, 0])


def test_a_constant_zero_tensor_gets_a_valid_quantizer():
    scale, zero_point = qparams(0.0, 0.0, 8)
    assert scale == np.finfo(np.float32).eps and zero_point == 0
    np.testing.assert_array_equal(fake_quantize(np.zeros(3), scale, zero_point, 0, 255), 0)


def test_power_of_two_scales_round_up():
    # 4/255 = 0.0157 is just above 2^-6 = 0.015625, so it rounds up to 2^-5
    scale, zero_point = qparams(-1.0, 3.0, 8, power_of_two=True)
    assert scale == 2.0**-5 and zero_point == 32  # -1 / 2^-5 = -32 exactly
    np.testing.assert_array_equal(pow2_scale([0.3, 0.25]), [0.5, 0.25])
    # fixed point: q = round(w * 2^6)
    q = quantize([0.1, -0.5], 2.0**-6, 0, -128, 127)
    np.testing.assert_array_equal(q, np.round(np.array([0.1, -0.5]) * 64))


def test_per_channel_worked_example():
    x = np.array([[0.5, -1.0, 0.25], [4.0, 2.0, -4.0]], dtype=np.float32)
    scale, zero_point = qparams([-1.0, -4.0], [0.5, 4.0], 8, symmetric=True, narrow_range=True)
    np.testing.assert_array_equal(scale, np.float32([1.0, 4.0]) / np.float32(127))
    q = quantize(x, scale, zero_point, -127, 127, axis=0)
    np.testing.assert_array_equal(q, [[64, -127, 32], [127, 64, -127]])  # 63.5 -> 64 (even)
    back = fake_quantize(x, scale, zero_point, -127, 127, axis=0)
    np.testing.assert_array_equal(back, dequantize(q, scale, zero_point, axis=0))


def test_float32_in_float32_out_and_float64_kept():
    x32 = np.linspace(-1, 1, 7, dtype=np.float32)
    assert fake_quantize(x32, 0.1, 0, -128, 127).dtype == np.float32
    assert fake_quantize(x32.astype(np.float64), 0.1, 0, -128, 127).dtype == np.float64


# ------------------------------------------------------------ properties
@st.composite
def ranges_and_values(draw):
    bits = draw(st.integers(2, 16))
    symmetric = draw(st.booleans())
    x_min = draw(st.floats(-100, 0, allow_subnormal=False))
    x_max = draw(st.floats(0, 100, allow_subnormal=False))
    x = draw(st.lists(st.floats(0, 1), min_size=1, max_size=20))
    x = np.float32(x_min) + np.array(x, dtype=np.float32) * np.float32(x_max - x_min)
    return bits, symmetric, np.float32(x_min), np.float32(x_max), np.clip(x, x_min, x_max)


@settings(deadline=None, max_examples=60)
@given(ranges_and_values())
def test_round_trip_error_at_most_half_a_step_inside_the_range(case):
    bits, symmetric, x_min, x_max, x = case
    scale, zero_point = qparams(x_min, x_max, bits, symmetric=symmetric)
    qmin, qmax = qrange(bits, signed=symmetric)
    q = quantize(x, scale, zero_point, qmin, qmax)
    assert q.min() >= qmin and q.max() <= qmax
    error = np.abs(fake_quantize(x, scale, zero_point, qmin, qmax) - x)
    slack = 1e-5 * float(scale) + 4 * np.finfo(np.float32).eps * np.abs(x).max()
    assert error.max() <= float(scale) / 2 + slack


@settings(deadline=None, max_examples=40)
@given(
    st.integers(2, 16),
    st.booleans(),
    st.lists(st.floats(-1e4, 1e4, allow_subnormal=False), min_size=1, max_size=20),
)
def test_integers_always_lie_in_range_and_dequantize_is_fake_quantize(bits, signed, values):
    x = np.array(values, dtype=np.float32)
    qmin, qmax = qrange(bits, signed=signed)
    scale, zero_point = np.float32(0.37), (qmin + qmax) // 2
    q = quantize(x, scale, zero_point, qmin, qmax)
    assert q.dtype == np.int64 and q.min() >= qmin and q.max() <= qmax
    np.testing.assert_array_equal(
        dequantize(q, scale, zero_point), fake_quantize(x, scale, zero_point, qmin, qmax)
    )


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("bits", [1, 17, 0, -3])
def test_bits_outside_2_to_16_are_refused(bits):
    with pytest.raises(ValueError, match="bits must lie in 2..16"):
        qrange(bits)
    with pytest.raises(ValueError, match="bits must lie in 2..16"):
        qparams(-1.0, 1.0, bits)


def test_one_bit_points_to_the_binary_scheme_and_floats_are_refused():
    with pytest.raises(ValueError, match="binary"):
        qparams(-1.0, 1.0, 1)
    with pytest.raises(TypeError, match="bits must be an integer"):
        qrange(8.0)


@pytest.mark.parametrize("scale", [0.0, -0.1, np.inf, np.nan, [0.1, 0.0]])
def test_scales_that_are_not_positive_are_refused(scale):
    axis = 0 if np.ndim(scale) else None
    with pytest.raises(ValueError, match="scale must be positive"):
        fake_quantize(np.ones((2, 3)), scale, np.zeros(np.shape(scale), int), 0, 255, axis=axis)
    with pytest.raises(ValueError, match="scale must be positive"):
        quantize(np.ones((2, 3)), scale, np.zeros(np.shape(scale), int), 0, 255, axis=axis)


def test_per_channel_without_axis_a_missing_axis_and_wrong_sizes():
    x = np.ones((4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="per-tensor quantization needs one scale"):
        fake_quantize(x, [0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0], -128, 127)
    with pytest.raises(ValueError, match="axis 2 does not exist"):
        fake_quantize(x, [0.1] * 4, [0] * 4, -128, 127, axis=2)
    with pytest.raises(ValueError, match="needs 4 scales"):
        fake_quantize(x, [0.1, 0.2, 0.3], [0, 0, 0], -128, 127, axis=0)
    with pytest.raises(ValueError, match="as many entries"):
        ste_mask(x, [0.1] * 4, [0] * 3, -128, 127, axis=0)


def test_bad_ranges_and_zero_points_are_refused():
    with pytest.raises(ValueError, match="must not exceed"):
        qparams(1.0, -1.0, 8)
    with pytest.raises(ValueError, match="finite"):
        qparams(-np.inf, 1.0, 8)
    with pytest.raises(ValueError, match="one shape"):
        qparams([0.0, 1.0], 1.0, 8)
    with pytest.raises(ValueError, match="zero_point must lie"):
        quantize([1.0], 0.1, 300, 0, 255)
    with pytest.raises(ValueError, match="qmin must be below qmax"):
        quantize([1.0], 0.1, 0, 5, 5)


# ------------------------------------------------------- PyTorch parity
def torch_observer(torch, bits, symmetric, per_channel):
    qmin, qmax = qrange(bits, signed=symmetric)
    o = torch.ao.quantization
    if per_channel:
        scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        return o.PerChannelMinMaxObserver(
            ch_axis=0, dtype=torch.qint32, qscheme=scheme, quant_min=qmin, quant_max=qmax
        )
    scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    return o.MinMaxObserver(dtype=torch.qint32, qscheme=scheme, quant_min=qmin, quant_max=qmax)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bits", range(2, 17))
def test_per_tensor_parity_with_pytorch(bits, symmetric):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal(500) * 3 + 0.7).astype(np.float32)
    qmin, qmax = qrange(bits, signed=symmetric)
    observer = torch_observer(torch, bits, symmetric, per_channel=False)
    observer(torch.from_numpy(x))
    t_scale, t_zp = observer.calculate_qparams()
    scale, zero_point = qparams(x.min(), x.max(), bits, symmetric=symmetric)
    assert float(t_scale) == float(scale) and int(t_zp) == int(zero_point)

    x_wide = x * np.float32(1.3)  # some entries fall outside the range and clip
    xt = torch.from_numpy(x_wide).requires_grad_(True)
    yt = torch.fake_quantize_per_tensor_affine(xt, float(scale), int(zero_point), qmin, qmax)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dout))
    ours = fake_quantize(x_wide, scale, zero_point, qmin, qmax)
    np.testing.assert_array_equal(ours, yt.detach().numpy())
    mask = ste_mask(x_wide, scale, zero_point, qmin, qmax)
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(dout * mask, xt.grad.numpy())


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bits", range(2, 17))
def test_per_channel_parity_with_pytorch(bits, symmetric):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + bits)
    w = (rng.standard_normal((6, 3, 2, 2)) * rng.uniform(0.1, 2, (6, 1, 1, 1))).astype(np.float32)
    w[2] = np.abs(w[2])  # a channel with no negative value: its range is widened to 0
    qmin, qmax = qrange(bits, signed=symmetric)
    observer = torch_observer(torch, bits, symmetric, per_channel=True)
    observer(torch.from_numpy(w))
    t_scale, t_zp = observer.calculate_qparams()
    x_min = w.reshape(6, -1).min(axis=1)
    x_max = w.reshape(6, -1).max(axis=1)
    scale, zero_point = qparams(x_min, x_max, bits, symmetric=symmetric)
    np.testing.assert_array_equal(scale, t_scale.numpy())
    np.testing.assert_array_equal(zero_point, t_zp.numpy())

    w_wide = w * np.float32(1.2)
    wt = torch.from_numpy(w_wide).requires_grad_(True)
    zp_t = torch.from_numpy(zero_point).to(torch.int32)
    yt = torch.fake_quantize_per_channel_affine(wt, torch.from_numpy(scale), zp_t, 0, qmin, qmax)
    dout = rng.standard_normal(w.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(
        fake_quantize(w_wide, scale, zero_point, qmin, qmax, axis=0), yt.detach().numpy()
    )
    np.testing.assert_array_equal(
        dout * ste_mask(w_wide, scale, zero_point, qmin, qmax, axis=0), wt.grad.numpy()
    )


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_narrow_signed_range_parity_with_pytorch(bits):
    torch = pytest.importorskip("torch")
    qmin, qmax = qrange(bits, signed=True, narrow_range=True)
    x = np.random.default_rng(bits).standard_normal(200).astype(np.float32)
    observer = torch.ao.quantization.MinMaxObserver(
        dtype=torch.qint32, qscheme=torch.per_tensor_symmetric, quant_min=qmin, quant_max=qmax
    )
    observer(torch.from_numpy(x))
    t_scale, t_zp = observer.calculate_qparams()
    scale, zero_point = qparams(x.min(), x.max(), bits, symmetric=True, narrow_range=True)
    assert float(t_scale) == float(scale) and int(t_zp) == int(zero_point) == 0
