"""Integer-only inference: fixed-point rescaling, exact fast matmul, the engine against its twin."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from compression.quantization.affine import quantize
from compression.quantization.integer import (
    IntegerSequential,
    block_size_for,
    compile_integer,
    fake_quant_reference,
)
from compression.quantization.integer_layers import ActQuant, IntegerConv2d, IntegerLinear
from compression.quantization.integer_ops import (
    INT32_MAX,
    INT32_MIN,
    exact_chunk_size,
    matmul_exact,
    matmul_int64,
    quantize_multiplier,
    rescale,
    rescale_reference,
    rounding_divide_by_pot_reference,
    saturating_rounding_doubling_high_mul_reference,
)
from compression.quantization.integer_pooling import IntegerAvgPool2d, IntegerMaxPool2d
from tinynet import functional as F


# ------------------------------------------------------------ the multiplier
def test_quantize_multiplier_known_answers():
    cases = {
        0.75: (3 * 2**29, 0),  # 0.75 * 2^0
        0.5: (2**30, 0),
        0.25: (2**30, 1),  # 0.5 * 2^-1
        1.0: (2**30, -1),  # 0.5 * 2^1: a left shift
        3.0: (3 * 2**29, -2),  # 0.75 * 2^2
        1 - 2.0**-40: (2**30, -1),  # f * 2^31 rounds up to 2^31: carry
        1e-12: (0, 0),  # below 2^-32: every output rounds to 0
    }
    for M, (M0, shift) in cases.items():
        got = quantize_multiplier(M)
        assert (int(got[0]), int(got[1])) == (M0, shift), M
        assert got[0].dtype == np.int32


def test_quantize_multiplier_is_M_to_31_bits():
    rng = np.random.default_rng(0)
    M = np.exp(rng.uniform(np.log(1e-6), np.log(100.0), size=2000))
    M0, shift = quantize_multiplier(M)
    assert np.all((M0 >= 2**30) & (M0.astype(np.int64) < 2**31))
    for m, m0, s in zip(M, M0, shift):
        exact = Fraction(int(m0), 2 ** (31 + int(s)))  # M0 * 2^-31 * 2^-shift
        # rounding f * 2^31 to an integer moves M by at most half a unit of 2^(-31 - shift)
        assert abs(exact - Fraction(float(m))) <= Fraction(1, 2 ** (32 + int(s)))


@pytest.mark.parametrize("bad", [0.0, -0.1, np.inf, np.nan, 2.0**30, []])
def test_quantize_multiplier_rejects(bad):
    with pytest.raises(ValueError, match="multiplier"):
        quantize_multiplier(bad)


# ------------------------------------------------------------------ rescale
def test_gemmlowp_references_by_hand():
    srdhm = saturating_rounding_doubling_high_mul_reference
    assert srdhm(2**30, 2**30) == 2**29  # 0.5 * 0.5 in Q31
    assert srdhm(INT32_MIN, INT32_MIN) == INT32_MAX  # the one saturating case
    assert srdhm(3, 2**30) == 2  # 1.5 rounds up
    assert srdhm(-3, 2**30) == -1  # -1.5 rounds up too (the nudge)
    assert srdhm(-5, 2**30) == -2  # -2.5 -> -2
    rdbpot = rounding_divide_by_pot_reference
    # x / 2^e rounded half away from zero
    cases = [(5, 1, 3), (-5, 1, -3), (3, 1, 2), (-3, 1, -2), (4, 2, 1), (6, 2, 2), (-6, 2, -2)]
    cases += [(7, 0, 7), (-7, 0, -7), (-1, 3, 0), (-4, 3, -1), (-5, 3, -1), (-3, 3, 0)]
    for x, e, want in cases:
        assert rdbpot(x, e) == want, (x, e)


def test_high_mul_is_one_floor_formula():
    # gemmlowp's nudge + truncating division == floor((a*b + 2^30) / 2^31), ties included
    rng = np.random.default_rng(1)
    a = rng.integers(INT32_MIN + 1, INT32_MAX, size=3000)
    b = rng.integers(0, INT32_MAX, size=3000)
    ties = [(k, 2**30) for k in range(-9, 10)] + [(-(2**31) + 1, 2**30), (INT32_MAX, INT32_MAX)]
    for x, y in list(zip(a.tolist(), b.tolist())) + ties:
        assert saturating_rounding_doubling_high_mul_reference(x, y) == (x * y + 2**30) >> 31


def test_rescale_doc_example():
    M0, shift = quantize_multiplier(0.0123)
    assert rescale(np.array([1000, -1000, 41, 40]), M0, shift).tolist() == [12, -12, 1, 0]


def _random_rescale_cases(seed, n):
    rng = np.random.default_rng(seed)
    acc = rng.integers(INT32_MIN, INT32_MAX, size=n, endpoint=True)
    acc[: n // 2] //= 2 ** rng.integers(0, 31, size=n // 2)  # many small accumulators too
    M = np.exp(rng.uniform(np.log(2.0**-30), np.log(8.0), size=n))  # includes M >= 1
    M[:10] = 2.0 ** np.arange(-30, 30, 6)  # powers of two: M0 = 2^30 exactly
    M0, shift = quantize_multiplier(M)
    return acc, M, M0, shift


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_rescale_equals_gemmlowp_reference(rounding):
    acc, _, M0, shift = _random_rescale_cases(2, 20000)
    got = rescale(acc, M0, shift, rounding)
    want = [rescale_reference(int(a), int(m), int(s), rounding) for a, m, s in zip(acc, M0, shift)]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_single_rounding_is_round_half_up_of_the_exact_product():
    acc, _, M0, shift = _random_rescale_cases(3, 3000)
    got = rescale(acc, M0, shift, "single")
    for a, m0, s, g in zip(acc, M0, shift, got):
        exact = int(a) * Fraction(int(m0), 2 ** (31 + int(s)))
        assert g == math.floor(exact + Fraction(1, 2))


def test_double_rounding_by_hand():
    M0, shift = quantize_multiplier(0.0473)
    assert (int(M0), int(shift)) == (1625215625, 4)
    # exact -0.473: step 1 rounds -7.57 to -8, step 2 rounds -8/16 = -0.5 away from zero
    assert rescale([-10], M0, shift).tolist() == [-1]
    assert rescale([-10], M0, shift, "single").tolist() == [0]
    with pytest.raises(ValueError, match="rounding"):
        rescale([1], M0, shift, "nearest")


def test_rescale_per_channel_broadcast_equals_reference():
    rng = np.random.default_rng(3)
    acc = rng.integers(-(2**24), 2**24, size=(5, 4, 3, 3)).astype(np.int32)
    M0, shift = quantize_multiplier(rng.uniform(1e-4, 0.9, size=4))
    got = rescale(acc, M0.reshape(1, 4, 1, 1), shift.reshape(1, 4, 1, 1))
    for (n, c, i, j), a in np.ndenumerate(acc):
        assert got[n, c, i, j] == rescale_reference(int(a), int(M0[c]), int(shift[c]))


def test_rescale_within_one_of_exact_product():
    acc, M, M0, shift = _random_rescale_cases(4, 5000)
    got = rescale(acc, M0, shift)
    for a, m, m0, s, g in zip(acc, M, M0, shift, got):
        left = max(-int(s), 0)
        if not INT32_MIN <= int(a) * 2**left <= INT32_MAX:
            continue  # saturated (M >= 1 on a huge accumulator): clamped by design
        exact = int(a) * Fraction(int(m0), 2 ** (31 + int(s)))
        assert abs(g - exact) < 1  # two roundings, each at most half a unit of its own step
        real = int(a) * Fraction(float(m))
        if abs(real) < 2**24:  # the 31-bit multiplier's own error stays far below 1 here
            assert abs(g - round(real)) <= 1


@settings(deadline=None, max_examples=200)
@given(
    acc=st.integers(INT32_MIN, INT32_MAX),
    M=st.floats(2.0**-31, 1000.0, allow_nan=False, allow_infinity=False),
)
def test_rescale_property(acc, M):
    M0, shift = quantize_multiplier(M)
    assert int(rescale(np.array([acc]), M0, shift)[0]) == rescale_reference(
        acc, int(M0), int(shift)
    )


# ----------------------------------------------------------- exact matmul
def test_exact_chunk_size_known_answers():
    assert exact_chunk_size(128, 128) == 1024  # int8 x int8: 2^24 / 2^14
    assert exact_chunk_size(255, 127) == 518  # centred uint8 x narrow int8
    assert exact_chunk_size(255, 128) == 514  # 255 * 128 * 512 < 2^24 as well
    with pytest.raises(ValueError, match="2\\^24"):
        exact_chunk_size(2**13, 2**12)


@pytest.mark.parametrize(
    "a_value, b_value, K",
    [
        (255, 127, 3000),  # every partial sum positive and as large as it gets
        (-255, 127, 1037),
        (255, -128, 2049),
        (-128, -128, 3072),  # int8 x int8: chunks of 1024 terms reach exactly 2^24
        (127, 127, 1),
    ],
)
def test_matmul_exact_at_worst_case_values(a_value, b_value, K):
    a = np.full((3, K), a_value, dtype=np.int64)
    b = np.full((K, 5), b_value, dtype=np.int64)
    got = matmul_exact(a, b, abs(a_value), abs(b_value))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, matmul_int64(a, b))
    assert got[0, 0] == K * a_value * b_value


def test_matmul_exact_random_extremes_and_broadcast():
    rng = np.random.default_rng(5)
    a = rng.choice(np.array([-255, -254, 0, 254, 255]), size=(4, 2, 40, 1500))
    b = rng.choice(np.array([-127, 126, 127]), size=(2, 1500, 7))
    np.testing.assert_array_equal(matmul_exact(a, b), matmul_int64(a, b))
    # already-float32 inputs (as the engine passes them) give the same integers
    got = matmul_exact(a.astype(np.float32), b.astype(np.float32), 255, 127)
    np.testing.assert_array_equal(got, matmul_int64(a, b))


def test_plain_float32_matmul_is_not_exact_here():
    # why the chunks exist: one float32 product over K = 4096 loses the low bits
    rng = np.random.default_rng(6)
    a = rng.integers(200, 256, size=(8, 4096))
    b = rng.integers(100, 128, size=(4096, 8))
    plain = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
    assert np.any(plain != matmul_int64(a, b))
    np.testing.assert_array_equal(matmul_exact(a, b, 255, 127), matmul_int64(a, b))


def test_matmul_exact_refuses_int32_overflow():
    with pytest.raises(OverflowError, match="int32"):
        matmul_exact(np.ones((1, 70000)), np.ones((70000, 1)), 255, 127)


# ------------------------------------------------------- activation quantizer
def test_act_quant_matches_affine_quantize():
    rng = np.random.default_rng(7)
    aq = ActQuant.from_range(-0.4242, 2.8215, 8)
    x = np.concatenate([rng.uniform(-1, 4, 5000), (np.arange(-40, 260) - aq.zero_point + 0.5)])
    x = (x * np.float32(aq.scale)).astype(np.float32)  # includes near-ties
    q = aq.quantize(x)
    assert q.dtype == np.uint8
    want = quantize(x, aq.scale, aq.zero_point, 0, 255)
    np.testing.assert_array_equal(q, want)
    np.testing.assert_array_equal(aq.dequantize(q), aq.fake_quantize(x))


def test_act_quant_signed_is_the_shifted_grid():
    u = ActQuant.from_range(-1.0, 3.0, 8)
    s = ActQuant.from_range(-1.0, 3.0, 8, signed=True)
    assert (u.scale, u.zero_point, u.qmin, u.qmax) == (s.scale, 64, 0, 255)
    assert (s.zero_point, s.qmin, s.qmax, s.dtype) == (64 - 128, -128, 127, np.int8)
    x = np.linspace(-2, 4, 101, dtype=np.float32)
    np.testing.assert_array_equal(u.dequantize(u.quantize(x)), s.dequantize(s.quantize(x)))


# --------------------------------------------------- layers against the twin
def _quant_of(y, bits=8, signed=False):
    return ActQuant.from_range(float(y.min()), float(y.max()), bits, signed)


def _check_against_twin(layer, q, reference_acc, max_rate=0.01):
    """Integers equal the exact reference; the twin is within one output step."""
    steps = layer.steps(q)
    np.testing.assert_array_equal(steps["acc"], reference_acc)
    q_out = layer.forward(q)
    np.testing.assert_array_equal(steps["q_out"], q_out)
    assert q_out.dtype == layer.out_quant.dtype
    twin = layer.forward_float(layer.in_quant.dequantize(q))
    q_twin = layer.out_quant.quantize(twin).astype(np.int64)
    np.testing.assert_array_equal(layer.out_quant.dequantize(q_twin), twin)  # on the grid
    diff = np.abs(q_out.astype(np.int64) - q_twin)
    # Both round acc * M. With one rounding they differ only where it lies within float
    # error of a half step; gemmlowp's two roundings add an error below half a step.
    assert diff.max() <= 1
    assert np.mean(diff != 0) <= max_rate
    return steps


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_integer_linear_against_exact_integers_and_twin(per_channel, relu):
    rng = np.random.default_rng(8)
    W = rng.normal(0, 0.1, size=(20, 50)).astype(np.float32)
    W[3] *= 10  # one channel with much larger weights: per-channel scales matter
    b = rng.normal(0, 0.5, size=20).astype(np.float32)
    x = rng.normal(0.5, 1.0, size=(400, 50)).astype(np.float32)
    in_q = _quant_of(x)
    y = in_q.fake_quantize(x) @ W.T + b
    out_q = _quant_of(np.maximum(y, 0) if relu else y)
    layer = IntegerLinear(W, b, in_q, out_q, per_channel=per_channel, relu=relu)
    q = in_q.quantize(x)
    x_centred = q.astype(np.int64) - in_q.zero_point
    steps = _check_against_twin(layer, q, matmul_int64(x_centred, layer.w_q.T))
    assert np.abs(layer.w_q).max() == 127 and layer.w_q.min() >= -127  # narrow range
    assert (np.unique(layer.w_scale).size > 1) == per_channel
    np.testing.assert_array_equal(steps["acc_bias"], steps["acc"] + layer.bias_q)
    np.testing.assert_array_equal(
        np.clip(steps["y"] + out_q.zero_point, layer.lo, 255), steps["q_out"]
    )
    if relu:
        assert steps["q_out"].min() >= out_q.zero_point


@pytest.mark.parametrize("stride, padding, size", [(1, 2, 20), (2, 1, 11), (1, 0, 9)])
def test_integer_conv2d_against_naive_integers_and_twin(stride, padding, size):
    # size 20 -> 20-wide output rows (columns ordered per sample); 11 and 9 -> batch last
    rng = np.random.default_rng(9)
    W = rng.normal(0, 0.2, size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, size=4).astype(np.float32)
    x = rng.uniform(-0.5, 2.0, size=(6, 3, size, size)).astype(np.float32)
    in_q = _quant_of(x)
    y = F.conv2d(in_q.fake_quantize(x), W, b, stride, padding)
    layer = IntegerConv2d(W, b, in_q, _quant_of(y), relu=False, stride=stride, padding=padding)
    q = in_q.quantize(x)
    x_centred = q.astype(np.int64) - in_q.zero_point  # zero padding is the real 0
    ref = F.conv2d_naive(x_centred, layer.w_q.astype(np.int64), None, stride, padding)
    _check_against_twin(layer, q, ref)


@pytest.mark.parametrize("bits, signed", [(4, False), (8, True), (3, True)])
def test_low_bits_and_signed_activations_stay_within_one_step(bits, signed):
    rng = np.random.default_rng(10)
    W = rng.normal(0, 0.1, size=(16, 30)).astype(np.float32)
    x = rng.normal(0, 1, size=(300, 30)).astype(np.float32)
    in_q = _quant_of(x, bits, signed)
    out_q = _quant_of(in_q.fake_quantize(x) @ W.T, bits, signed)
    q = in_q.quantize(x)
    # small accumulators (30 terms of few bits): gemmlowp's double rounding is off by one
    # step in up to 10% of outputs here; a single rounding matches the twin
    for rounding, max_rate in [("double", 0.1), ("single", 0.002)]:
        layer = IntegerLinear(W, None, in_q, out_q, weight_bits=bits, rounding=rounding)
        assert np.abs(layer.w_q).max() == 2 ** (bits - 1) - 1
        ref = matmul_int64(q.astype(np.int64) - in_q.zero_point, layer.w_q.T)
        _check_against_twin(layer, q, ref, max_rate)


def test_pooling_on_integers():
    rng = np.random.default_rng(11)
    aq = ActQuant.from_range(-1.0, 3.0, 8)
    q = rng.integers(0, 256, size=(5, 3, 9, 8)).astype(np.uint8)
    x = aq.dequantize(q)
    mx = IntegerMaxPool2d(aq, 2)
    np.testing.assert_array_equal(aq.dequantize(mx.forward(q)), F.max_pool2d(x, 2))  # exact
    np.testing.assert_array_equal(mx.forward_float(x), F.max_pool2d(x, 2))
    av = IntegerAvgPool2d(aq, 3, 2)
    window_sums = np.rint(F.avg_pool2d(q.astype(np.float64), 3, 2) * 9)  # integers
    np.testing.assert_array_equal(av.forward(q), np.floor((window_sums + 4) / 9))  # half up
    twin = aq.quantize(av.forward_float(x)).astype(np.int64)
    assert np.abs(av.forward(q).astype(np.int64) - twin).max() <= 1  # ties round differently


def test_avg_pool_rounds_half_up_by_hand():
    aq = ActQuant.from_range(0.0, 2.55, 8)
    q = np.array([[[[1, 2], [2, 1]]], [[[1, 2], [2, 2]]], [[[0, 0], [0, 1]]]], dtype=np.uint8)
    # means 1.5 -> 2, 1.75 -> 2, 0.25 -> 0
    assert IntegerAvgPool2d(aq, 2).forward(q).ravel().tolist() == [2, 2, 0]


def test_accumulator_overflow_is_refused():
    in_q = ActQuant.from_range(0.0, 1.0, 8)
    out_q = ActQuant.from_range(0.0, 1.0, 8)
    W = np.full((2, 4), 1e-3, dtype=np.float32)
    with pytest.raises(OverflowError, match="int32 accumulator"):
        IntegerLinear(W, np.array([1e6, 0.0], np.float32), in_q, out_q)


# ------------------------------------------------------------ the engine
@pytest.fixture(scope="module")
def trained_lenet5():
    data = tinynet.data.load_mnist_mini()
    tinynet.manual_seed(0)
    model = tinynet.models.lenet5()
    opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x, y = data.x_train[:6400], data.y_train[:6400]  # 100 steps of 64: about 92% held out
    tinynet.fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 1, batch_size=64, progress=False)
    return model.eval(), data


def test_lenet5_engine_agrees_with_twin(trained_lenet5):
    model, data = trained_lenet5
    engine = compile_integer(model, data.x_train[:500])
    x, y = data.x_heldout, data.y_heldout
    logits = engine(x)
    twin = fake_quant_reference(engine, x)
    assert logits.dtype == np.float32 and logits.shape == (2000, 10)
    agree = np.mean(logits.argmax(1) == twin.argmax(1))
    assert agree >= 0.99
    with tinynet.no_grad():
        float_acc = np.mean(model(x).argmax(1) == y)
    assert float_acc > 0.85  # it did learn
    assert abs(np.mean(logits.argmax(1) == y) - float_acc) < 0.01
    # logits are on the output grid and within a few steps of the twin's
    steps = np.abs(logits - twin) / engine.output_quant.scale
    assert np.median(steps) < 0.5 and steps.max() < 8
    np.testing.assert_array_equal(engine.predict(x, batch_size=300), logits.argmax(1))
    # one rounding: the engine and the twin agree per layer almost everywhere
    single = compile_integer(model, data.x_train[:500], rounding="single")
    assert np.mean(single(x).argmax(1) == fake_quant_reference(single, x).argmax(1)) >= 0.995


def test_engine_structure_and_explain(trained_lenet5):
    model, data = trained_lenet5
    engine = compile_integer(model, data.x_train[:300], per_channel=False)
    kinds = [type(layer).__name__ for layer in engine]
    assert kinds == [
        "IntegerConv2d",
        "IntegerMaxPool2d",
        "IntegerConv2d",
        "IntegerMaxPool2d",
        "IntegerFlatten",
        "IntegerLinear",
        "IntegerLinear",
        "IntegerLinear",
    ]
    assert engine[0].source == "0 Conv2d + 1 ReLU" and engine[0].relu
    assert engine.input_quant.dtype == np.uint8 and engine[0].out_quant.zero_point == 0
    assert "IntegerSequential" in repr(engine) and "M0" in repr(engine)
    x = data.x_heldout[:3]
    steps = engine.explain(x, 2)
    q_in = engine.forward_int_until(engine.quantize_input(x), 2)
    np.testing.assert_array_equal(steps["q_in"], q_in)
    np.testing.assert_array_equal(steps["q_out"], engine[2].forward(q_in))
    assert steps["acc"].dtype == np.int32 and steps["M0"].shape == (16,)
    with pytest.raises(ValueError, match="no weights"):
        engine.explain(x, 1)
    # blocks change nothing: every image is computed on its own
    small = compile_integer(model, data.x_train[:300], per_channel=False)
    small.block_size = 7
    np.testing.assert_array_equal(small(data.x_heldout[:50]), engine(data.x_heldout[:50]))


def test_lenet_300_100_with_dropout_and_signed_activations():
    rng = np.random.default_rng(12)
    x = rng.normal(0, 1, size=(200, 1, 28, 28)).astype(np.float32)
    tinynet.manual_seed(1)
    model = tinynet.models.mlp((784, 64, 32, 10), dropout=0.5).eval()
    engine = compile_integer(model, x, signed_activations=True)
    assert len(engine) == 4  # Flatten and three Linear (+ReLU); Dropout skipped
    assert engine.input_quant.dtype == np.int8
    assert engine[1].out_quant.zero_point == -128  # a ReLU output starts at the lowest integer
    agree = np.mean(engine(x).argmax(1) == fake_quant_reference(engine, x).argmax(1))
    assert agree >= 0.97


def test_unfused_relu_and_avg_pool_in_a_model():
    rng = np.random.default_rng(13)
    x = rng.normal(0, 1, size=(64, 1, 12, 12)).astype(np.float32)
    tinynet.manual_seed(2)
    model = tinynet.Sequential(
        tinynet.Conv2d(1, 4, 3),
        tinynet.AvgPool2d(2),
        tinynet.ReLU(),
        tinynet.Flatten(),
        tinynet.Linear(100, 5),
    ).eval()
    engine = compile_integer(model, x)
    assert [type(layer).__name__ for layer in engine][1:3] == ["IntegerAvgPool2d", "IntegerReLU"]
    q = engine.forward_int_until(engine.quantize_input(x), 3)
    assert q.min() >= engine[2].in_quant.zero_point  # ReLU = max(q, Z)
    diff = np.abs(engine(x) - fake_quant_reference(engine, x)) / engine.output_quant.scale
    assert diff.max() < 4


def test_calibration_ranges_and_block_size():
    rng = np.random.default_rng(14)
    x = rng.normal(0, 1, size=(50, 1, 28, 28)).astype(np.float32)
    tinynet.manual_seed(3)
    model = tinynet.models.lenet_300_100()
    engine = compile_integer(model, x, batch_size=16)  # observers see every batch
    assert engine.input_quant == ActQuant.from_range(x.min(), x.max(), 8)
    with tinynet.no_grad():
        h1 = np.maximum(model[1](model[0](x)), 0)
    assert engine[1].out_quant == ActQuant.from_range(0.0, h1.max(), 8)
    assert engine.block_size == block_size_for(300) == 512  # widest layer: 300 values
    assert block_size_for(6 * 28 * 28) == 222  # LeNet-5's first conv: 2^23 / (8 * 4704)
    assert block_size_for(20 * 24 * 24 * 8) == 64  # at least 64
    assert block_size_for(20) == 512
    with pytest.raises(ValueError, match="block_size"):
        IntegerSequential(engine.input_quant, engine.layers, block_size=0)


# ------------------------------------------------------------------ errors
def test_errors_name_the_problem():
    x = np.zeros((4, 1, 28, 28), np.float32)
    bn = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(784, 8), tinynet.BatchNorm1d(8))
    with pytest.raises(ValueError, match="fold it first"):
        compile_integer(bn, x)
    sig = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(784, 8), tinynet.Sigmoid())
    with pytest.raises(ValueError, match="Sigmoid.*does not support"):
        compile_integer(sig, x)
    model = tinynet.models.lenet_300_100()
    for bits in (1, 9, 16):
        with pytest.raises(ValueError, match="2..8"):
            compile_integer(model, x, weight_bits=bits)
        with pytest.raises(ValueError, match="act_bits"):
            compile_integer(model, x, act_bits=bits)
    with pytest.raises(TypeError, match="integer"):
        compile_integer(model, x, weight_bits=8.0)
    with pytest.raises(ValueError, match="empty"):
        compile_integer(model, x[:0])
    with pytest.raises(TypeError, match="Sequential"):
        compile_integer(tinynet.Linear(3, 2), x)
    engine = compile_integer(model, x + 1)
    with pytest.raises(ValueError, match=r"IntegerLinear expected input of shape \(N, 784\)"):
        engine[1].forward(np.zeros((2, 100), np.uint8))
