"""compression.lowrank: truncated SVD, Eckart-Young, factorised layers and models."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from compression.lowrank import (
    choose_ranks,
    count_parameters,
    energy_kept,
    factorize_conv2d,
    factorize_linear,
    low_rank,
    low_rank_approximation,
    low_rank_factors,
    lowrank_report,
    max_useful_rank,
    rank_for_energy,
    rank_table,
    saves_parameters,
    singular_values,
    truncated_svd,
    truncation_error,
    weight_matrix,
)
from compression.storage import load_compressed, save_compressed
from tinynet import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from tinynet.gradcheck import gradcheck
from tinynet.models import lenet5, lenet_300_100
from tinynet.transforms import Mask


def outputs(model, x):
    with tinynet.no_grad():
        return model(x)


def random_matrix(m, n, seed=0):
    return np.random.default_rng(seed).standard_normal((m, n))


# ------------------------------------------------------- hand-worked SVDs


def test_2x2_by_hand():
    # W = [[3, 1], [1, 3]] is symmetric with eigenvectors (1, 1)/sqrt2 (eigenvalue 4) and
    # (1, -1)/sqrt2 (eigenvalue 2), so s = (4, 2) and W_1 = 4 * (1,1)(1,1)^T / 2 = all 2s.
    W = np.array([[3.0, 1.0], [1.0, 3.0]])
    np.testing.assert_allclose(singular_values(W), [4.0, 2.0], rtol=1e-15)
    np.testing.assert_allclose(low_rank_approximation(W, 1), [[2.0, 2.0], [2.0, 2.0]], rtol=1e-14)
    # Factors: sqrt(4) = 2 times the unit vector (1, 1)/sqrt2 on each side (up to one common sign).
    A, B = low_rank_factors(W, 1)
    np.testing.assert_allclose(np.abs(A), [[np.sqrt(2)], [np.sqrt(2)]], rtol=1e-14)
    np.testing.assert_allclose(np.abs(B), [[np.sqrt(2), np.sqrt(2)]], rtol=1e-14)
    np.testing.assert_allclose(A @ B, [[2.0, 2.0], [2.0, 2.0]], rtol=1e-14)
    # Eckart-Young: W - W_1 = [[1, -1], [-1, 1]], Frobenius norm 2 = the dropped singular value.
    assert truncation_error([4.0, 2.0], 1) == 2.0
    assert energy_kept([4.0, 2.0], 1) == 16 / 20
    assert truncation_error([4.0, 2.0], 2) == 0.0


def test_3x2_by_hand():
    W = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])  # s = (2, 1): the diagonal, sorted
    U, s, Vt = truncated_svd(W, 1)
    assert U.shape == (3, 1) and s.shape == (1,) and Vt.shape == (1, 2)
    assert s[0] == 2.0
    np.testing.assert_allclose(
        low_rank_approximation(W, 1), [[0.0, 0.0], [0.0, 2.0], [0.0, 0.0]], atol=1e-15
    )
    A, B = low_rank_factors(W, 1)
    assert A.shape == (3, 1) and B.shape == (1, 2)
    np.testing.assert_allclose(np.abs(A[:, 0]), [0.0, np.sqrt(2), 0.0], atol=1e-15)


def test_rank_for_energy_by_hand():
    s = np.array([3.0, 2.0, 1.0])  # s^2 = 9, 4, 1: cumulative 9/14 = 0.643, 13/14 = 0.929, 1
    assert rank_for_energy(s, 0.5) == 1
    assert rank_for_energy(s, 9 / 14) == 1  # exactly reached: ">=" keeps rank 1
    assert rank_for_energy(s, 0.65) == 2
    assert rank_for_energy(s, 0.93) == 3
    assert rank_for_energy(s, 1.0) == 3
    assert rank_for_energy([2.0, 1.0, 0.0], 1.0) == 2  # the numerical rank
    assert rank_for_energy([0.0, 0.0], 0.5) == 1  # a zero matrix
    assert energy_kept(s, 2) == pytest.approx(13 / 14, rel=1e-15)


def test_factor_dtype_and_shapes():
    W = random_matrix(5, 7).astype(np.float32)
    A, B = low_rank_factors(W, 3)
    assert A.dtype == B.dtype == np.float32 and A.shape == (5, 3) and B.shape == (3, 7)
    # Balanced split: column i of A and row i of B both have norm sqrt(s[i]).
    s = singular_values(W)[:3]
    np.testing.assert_allclose(np.linalg.norm(A, axis=0), np.sqrt(s), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(B, axis=1), np.sqrt(s), rtol=1e-5)
    conv = np.zeros((4, 2, 3, 3))
    assert weight_matrix(conv).shape == (4, 18)


# --------------------------------------------------------------- Eckart-Young


@settings(deadline=None, max_examples=25)
@given(
    m=st.integers(1, 7),
    n=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_eckart_young_error_is_the_dropped_singular_values(m, n, seed, data):
    W = random_matrix(m, n, seed)
    s = np.linalg.svd(W, compute_uv=False)
    r = data.draw(st.integers(1, min(m, n)))
    error = np.linalg.norm(W - low_rank_approximation(W, r))  # Frobenius
    assert error == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), abs=1e-12)
    assert truncation_error(singular_values(W), r) == pytest.approx(error, abs=1e-12)
    assert np.linalg.matrix_rank(low_rank_approximation(W, r)) == r
    # No other rank-r matrix is closer: try random ones and W's own rows/columns cut down.
    rng = np.random.default_rng(seed)
    for _ in range(5):
        other = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
        assert np.linalg.norm(W - other) >= error - 1e-12


# --------------------------------------------------------------- layers


def test_full_rank_linear_reproduces_the_layer_in_float64():
    tinynet.manual_seed(0)
    layer = Linear(6, 4).astype(np.float64)
    x = np.random.default_rng(1).standard_normal((5, 6))
    pair = factorize_linear(layer, 4)
    assert [type(m) for m in pair] == [Linear, Linear]
    assert pair[0].weight.shape == (4, 6) and pair[0].bias is None
    assert pair[1].weight.shape == (4, 4) and pair[1].weight.dtype == np.float64
    np.testing.assert_allclose(outputs(pair, x), outputs(layer, x), rtol=0, atol=1e-10)
    no_bias = Linear(6, 4, bias=False).astype(np.float64)
    pair = factorize_linear(no_bias, 4)
    assert pair[1].bias is None
    np.testing.assert_allclose(outputs(pair, x), outputs(no_bias, x), rtol=0, atol=1e-10)


def test_rank_r_linear_is_the_layer_with_the_rank_r_weight():
    tinynet.manual_seed(0)
    layer = Linear(8, 5).astype(np.float64)
    x = np.random.default_rng(1).standard_normal((3, 8))
    W2 = low_rank_approximation(layer.weight.value(), 2)
    expected = x @ W2.T + layer.bias.value()
    np.testing.assert_allclose(outputs(factorize_linear(layer, 2), x), expected, atol=1e-12)
    assert gradcheck(factorize_linear(layer, 2), x)  # backward through the pair


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_full_rank_conv_reproduces_the_layer_in_float64(stride, padding):
    tinynet.manual_seed(0)
    conv = Conv2d(3, 4, (3, 2), stride=stride, padding=padding).astype(np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    pair = factorize_conv2d(conv, 4)  # min(4, 3*3*2) = 4
    first, second = pair
    assert (first.in_channels, first.out_channels, first.kernel_size) == (3, 4, (3, 2))
    assert (first.stride, first.padding, first.bias) == (conv.stride, conv.padding, None)
    assert second.kernel_size == (1, 1) and second.weight.shape == (4, 4, 1, 1)
    np.testing.assert_allclose(outputs(pair, x), outputs(conv, x), rtol=0, atol=1e-10)


def test_rank_r_conv_equals_the_conv_with_the_rank_r_weight():
    tinynet.manual_seed(0)
    conv = Conv2d(3, 6, 3, padding=1).astype(np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    reference = Conv2d(3, 6, 3, padding=1).astype(np.float64)
    W2 = low_rank_approximation(weight_matrix(conv.weight.value()), 2)  # (6, 27), rank 2
    reference.weight.data = W2.reshape(6, 3, 3, 3)
    reference.bias.data = conv.bias.data.copy()
    pair = factorize_conv2d(conv, 2)
    assert pair[0].weight.shape == (2, 3, 3, 3) and pair[1].weight.shape == (6, 2, 1, 1)
    np.testing.assert_allclose(outputs(pair, x), outputs(reference, x), rtol=0, atol=1e-12)
    assert gradcheck(pair, x)


# ----------------------------------------------------------------- models


def test_low_rank_model_keys_counts_and_input_untouched():
    tinynet.manual_seed(0)
    model = lenet_300_100()
    before = model.state_dict()
    new = low_rank(model, {"1": 20, "3": 30})
    assert list(new.state_dict()) == [
        "1.0.weight",  # B: (20, 784)
        "1.1.weight",  # A: (300, 20)
        "1.1.bias",
        "3.0.weight",
        "3.1.weight",
        "3.1.bias",
        "5.weight",
        "5.bias",
    ]
    assert new.state_dict()["1.0.weight"].shape == (20, 784)
    assert new.state_dict()["1.1.weight"].shape == (300, 20)
    # 20 * (784 + 300) + 300  +  30 * (300 + 100) + 100  +  100 * 10 + 10
    assert count_parameters(new) == 21680 + 300 + 12000 + 100 + 1010 == 35090
    assert count_parameters(model) == 266610
    assert type(model[1]) is Linear and list(model.state_dict()) == list(before)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    table = rank_table(model, {"1": 20, "3": 30})
    assert [(r.name, r.rank, r.params_before, r.params_after) for r in table] == [
        ("1", 20, 235500, 21980),
        ("3", 30, 30100, 12100),
        ("5", None, 1010, 1010),
    ]
    assert "266,610 -> 35,090" in lowrank_report(model, {"1": 20, "3": 30})


def test_no_saving_no_factorisation():
    assert max_useful_rank(300, 784) == 216 and max_useful_rank(100, 300) == 74
    assert max_useful_rank(2, 2) == 0
    assert saves_parameters(300, 784, 216) and not saves_parameters(300, 784, 217)
    assert not saves_parameters(100, 300, 75)  # 75 * 400 = 30,000 = 100 * 300: no saving
    tinynet.manual_seed(0)
    model = lenet_300_100()
    new = low_rank(model, {"1": 217, "3": 74})
    assert type(new[1]) is Linear and type(new[3]) is Sequential  # 1 kept, 3 factorised
    np.testing.assert_array_equal(new[1].weight.data, model[1].weight.data)
    assert rank_table(model, {"1": 217})[0].factorized is False


def test_choose_ranks_by_energy_skips_layers_without_saving():
    rng = np.random.default_rng(0)
    Q1, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    Q2, _ = np.linalg.qr(rng.standard_normal((12, 8)))
    s = np.array([6.0, 3.0, 2.0, 1.0, 0, 0, 0, 0])  # s^2 = 36, 9, 4, 1: total 50
    model = Sequential(Linear(12, 8), ReLU(), Linear(8, 2))
    model[0].weight.data = (Q1 * s) @ Q2.T  # (8, 12)
    assert choose_ranks(model, 0.7, layers=["0"]) == {"0": 1}  # 36/50 = 0.72
    assert choose_ranks(model, 0.95, layers=["0"]) == {"0": 3}  # 49/50 = 0.98
    # Layer "2" (2 x 8) saves nothing below rank 2 = min(2, 8): rank 1 needs 10 < 16, kept;
    # at energy 1.0 it needs rank 2 (20 >= 16): left out.
    assert "2" not in choose_ranks(model, 1.0)
    assert choose_ranks(model, 1.0)["0"] == 4


def test_conv_layer_of_a_model_factorised_and_its_output_transform_moved():
    class Double:  # a minimal output transform: out -> 2 * out
        def forward(self, out):
            return 2 * out

        def backward(self, dout):
            return 2 * dout

    tinynet.manual_seed(0)
    model = lenet5().astype(np.float64)
    model[3].add_output_transform(Double())
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
    # Layer 3 is Conv2d(6, 16, 5): a 16 x 150 matrix; rank 14 saves (14 * 166 = 2,324 < 2,400).
    # Full rank never saves: min(m, n) * (m + n) > m * n.
    new = low_rank(model, {"3": 14})
    assert type(new[3]) is Sequential and len(new[3].output_transforms) == 1
    assert type(model[3]) is Conv2d and len(model[3].output_transforms) == 1  # untouched
    reference = copy.deepcopy(model)  # the same model with the rank-14 weight in place
    W14 = low_rank_approximation(weight_matrix(model[3].weight.value()), 14)
    reference[3].weight.data = W14.reshape(16, 6, 5, 5)
    np.testing.assert_allclose(outputs(new, x), outputs(reference, x), rtol=0, atol=1e-10)


def test_save_load_round_trip(tmp_path):
    tinynet.manual_seed(0)
    model = Sequential(
        Conv2d(1, 4, 3, padding=1),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(64, 20),
        ReLU(),
        Linear(20, 3),
    ).eval()
    new = low_rank(model, {"0": 2, "4": 5})
    path = tmp_path / "lowrank.tnc"
    nbytes = save_compressed(new, path)
    assert path.stat().st_size == nbytes
    loaded = load_compressed(path)
    assert list(loaded.state_dict()) == list(new.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(outputs(loaded, x), outputs(new, x))
    assert type(loaded[4]) is Sequential and loaded[4][0].weight.shape == (5, 64)


# ----------------------------------------------------------------- errors


def test_errors_name_what_was_expected_and_what_came():
    W = random_matrix(3, 5)
    with pytest.raises(ValueError, match=r"rank must be an integer in 1\.\.3 .*\(3, 5\), got 0"):
        truncated_svd(W, 0)
    with pytest.raises(ValueError, match=r"in 1\.\.3 .*got 4"):
        low_rank_factors(W, 4)
    with pytest.raises(ValueError, match=r"got 2\.0"):
        truncated_svd(W, 2.0)
    for energy in (0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match=rf"energy must be a number in \(0, 1\].*got {energy}"):
            rank_for_energy([1.0, 0.5], energy)
    with pytest.raises(ValueError, match=r"2-D weight matrix \(m, n\), got shape \(3,\)"):
        singular_values(np.ones(3))
    tinynet.manual_seed(0)
    model = lenet_300_100()
    with pytest.raises(
        ValueError, match=r"unknown layer name\(s\) \['2'\].*one of \['1', '3', '5'\]"
    ):
        low_rank(model, {"2": 3})
    with pytest.raises(ValueError, match=r"unknown layer name"):
        choose_ranks(model, 0.5, layers=["fc1"])
    with pytest.raises(ValueError, match=r"layer '5': rank must be an integer in 1\.\.10 .*got 11"):
        low_rank(model, {"5": 11})
    model[1].weight.add_transform(Mask(np.ones((300, 784), dtype=bool)))
    with pytest.raises(
        ValueError, match=r"layer '1'.s weight carries transforms \['Mask'\].*strip"
    ):
        low_rank(model, {"1": 10})
    with pytest.raises(TypeError, match="expects a Linear, got ReLU"):
        factorize_linear(ReLU(), 1)


# ----------------------------------------------------------------- PyTorch


def test_torch_parity():
    torch = pytest.importorskip("torch")
    W = random_matrix(6, 9, seed=3)
    U, s, Vt = torch.linalg.svd(torch.from_numpy(W), full_matrices=False)
    np.testing.assert_allclose(singular_values(W), s.numpy(), rtol=1e-12)
    W2_torch = (U[:, :2] * s[:2]) @ Vt[:2]
    np.testing.assert_allclose(low_rank_approximation(W, 2), W2_torch.numpy(), atol=1e-12)
    # The factored layer against nn.Sequential(nn.Linear(9, 2, bias=False), nn.Linear(2, 6)).
    tinynet.manual_seed(0)
    layer = Linear(9, 6).astype(np.float64)
    pair = factorize_linear(layer, 2)
    net = torch.nn.Sequential(torch.nn.Linear(9, 2, bias=False), torch.nn.Linear(2, 6)).double()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in pair.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 9))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(outputs(pair, x), expected, atol=1e-12)
