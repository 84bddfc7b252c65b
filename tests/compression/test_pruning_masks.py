"""compression.pruning.masks: hand-worked masks, exact sparsity, ties, and PyTorch parity."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compression.pruning import (
    check_sparsity,
    expand_unit_mask,
    global_magnitude_masks,
    magnitude_mask,
    magnitude_threshold,
    num_to_drop,
    std_threshold_mask,
    unit_mask,
)

W = np.array([[0.5, -0.1, 0.9], [-0.3, 0.05, 0.7], [0.2, -0.8, -0.4]])


def as_int(mask):
    return np.asarray(mask).astype(int).tolist()


# ----------------------------------------------------------- hand-worked
def test_worked_example_one_third():
    keep = magnitude_mask(W, 1 / 3)  # k = round(3.0) = 3: 0.05, -0.1, 0.2
    assert keep.dtype == bool and keep.shape == (3, 3)
    assert as_int(keep) == [[1, 0, 1], [1, 0, 1], [0, 1, 1]]
    assert magnitude_threshold(W, keep) == 0.2


def test_worked_example_half_rounds_half_to_even():
    keep = magnitude_mask(W, 0.5)  # 0.5 * 9 = 4.5 -> round(4.5) = 4, not 5
    assert as_int(keep) == [[1, 0, 1], [0, 0, 1], [0, 1, 1]]
    assert (~keep).sum() == 4


def test_num_to_drop_is_pythons_round():
    assert num_to_drop(0.5, 9) == 4  # 4.5 -> 4
    assert num_to_drop(0.5, 11) == 6  # 5.5 -> 6
    assert num_to_drop(0.25, 10) == 2  # 2.5 -> 2
    assert num_to_drop(0.9, 235_200) == 211_680
    assert num_to_drop(1, 7) == 7 and num_to_drop(0, 7) == 0


def test_sparsity_zero_and_one():
    assert magnitude_mask(W, 0.0).all()
    assert not magnitude_mask(W, 1.0).any()
    assert magnitude_mask(W, 0).all() and not magnitude_mask(W, 1).any()  # ints are fractions


def test_signs_do_not_matter_only_magnitude():
    w = np.array([-3.0, 1.0, -0.5, 2.0])
    assert as_int(magnitude_mask(w, 0.5)) == [1, 0, 0, 1]


def test_ties_drop_the_lower_flat_index_first():
    assert as_int(magnitude_mask(np.ones(4), 0.5)) == [0, 0, 1, 1]
    w = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    # three zeros tie: 0.5 * 6 = 3 drops exactly them; 4 drops the first 1.0 (index 1) too
    assert as_int(magnitude_mask(w, 0.5)) == [[0, 1, 0], [1, 0, 1]]
    assert as_int(magnitude_mask(w, 4 / 6)) == [[0, 0, 0], [1, 0, 1]]
    assert as_int(magnitude_mask(-w, 4 / 6)) == [[0, 0, 0], [1, 0, 1]]  # -0.0 ties with 0.0


def test_float32_input_and_any_shape():
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11.5
    keep = magnitude_mask(w, 0.25)
    assert keep.shape == (2, 3, 4) and (~keep).sum() == 6
    assert np.sort(np.abs(w[~keep])).tolist() == [0.5, 0.5, 1.5, 1.5, 2.5, 2.5]


def test_nan_weights_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        magnitude_mask(np.array([1.0, np.nan]), 0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.01, 2, -1, float("nan"), float("inf"), True, "0.5", None])
def test_bad_sparsities_are_named(bad):
    with pytest.raises(ValueError, match="sparsity must be a number in \\[0, 1\\]"):
        magnitude_mask(W, bad)
    with pytest.raises(ValueError, match="sparsity"):
        global_magnitude_masks([W], bad)


def test_numpy_numbers_are_accepted():
    assert check_sparsity(np.float32(0.5)) == 0.5
    assert check_sparsity(np.int64(1)) == 1.0
    with pytest.raises(ValueError, match="density"):
        check_sparsity(np.bool_(True), "density")


# ------------------------------------------------------------ properties
@settings(deadline=None, max_examples=40)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    sparsity=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    tied=st.booleans(),
)
def test_exact_count_and_smallest_dropped(shape, sparsity, seed, tied):
    rng = np.random.default_rng(seed)
    w = rng.integers(-3, 4, size=shape).astype(float) if tied else rng.standard_normal(shape)
    keep = magnitude_mask(w, sparsity)
    assert (~keep).sum() == round(sparsity * w.size)
    if keep.any() and (~keep).any():
        assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min()


@settings(deadline=None, max_examples=30)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    sparsity=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_global_is_one_threshold_with_an_exact_count(sizes, sparsity, seed):
    rng = np.random.default_rng(seed)
    tensors = [rng.standard_normal(n) * rng.uniform(0.1, 3) for n in sizes]
    masks = global_magnitude_masks(tensors, sparsity)
    assert [m.shape for m in masks] == [t.shape for t in tensors]
    dropped = np.concatenate([np.abs(t[~m]) for t, m in zip(tensors, masks)])
    kept = np.concatenate([np.abs(t[m]) for t, m in zip(tensors, masks)])
    assert dropped.size == round(sparsity * sum(sizes))
    if dropped.size and kept.size:
        assert dropped.max() <= kept.min()


# ----------------------------------------------------------------- global
def test_global_worked_example_differs_from_layer_wise():
    a = np.array([0.1, 0.9, -0.5])
    b = np.array([[0.3, -0.2], [0.05, 0.6]])
    ga, gb = global_magnitude_masks([a, b], 0.5)  # k = round(3.5) = 4
    assert as_int(ga) == [0, 1, 1] and as_int(gb) == [[0, 0], [0, 1]]
    assert as_int(magnitude_mask(a, 0.5)) == [0, 1, 0]  # round(1.5) = 2
    assert as_int(magnitude_mask(b, 0.5)) == [[1, 0], [0, 1]]  # round(2.0) = 2


def test_global_of_one_tensor_is_magnitude_mask():
    w = np.random.default_rng(1).standard_normal((7, 5))
    assert np.array_equal(global_magnitude_masks([w], 0.37)[0], magnitude_mask(w, 0.37))


def test_global_needs_a_tensor():
    with pytest.raises(ValueError, match="at least one tensor"):
        global_magnitude_masks([], 0.5)


# ----------------------------------------------------------- std threshold
def test_std_threshold_worked_example():
    assert math.isclose(np.std(W), 0.5196152422706632)
    assert as_int(std_threshold_mask(W, 0.5)) == [[1, 0, 1], [1, 0, 1], [0, 1, 1]]
    assert as_int(std_threshold_mask(W, 1.0)) == [[0, 0, 1], [0, 0, 1], [0, 1, 0]]
    assert std_threshold_mask(W, 0.0).all()


def test_std_threshold_keeps_the_gaussian_tail():
    w = np.random.default_rng(0).standard_normal(200_000)
    kept = std_threshold_mask(w, 1.0).mean()
    assert abs(kept - math.erfc(1 / math.sqrt(2))) < 0.005  # P(|z| > 1) = 0.3173


@pytest.mark.parametrize("bad", [-0.5, float("nan"), True, "1"])
def test_std_threshold_quality_is_checked(bad):
    with pytest.raises(ValueError, match="quality"):
        std_threshold_mask(W, bad)


# --------------------------------------------------------------- units
def test_unit_mask_and_expansion():
    keep = unit_mask(np.array([3.0, 0.5, 2.0, 0.1]), 0.5)
    assert as_int(keep) == [1, 0, 1, 0]
    full = expand_unit_mask(keep, (4, 2, 3, 3))
    assert full.shape == (4, 2, 3, 3) and full.flags.writeable
    assert full[0].all() and not full[1].any() and full[2].all() and not full[3].any()
    with pytest.raises(ValueError, match="1-D"):
        unit_mask(np.ones((2, 2)), 0.5)
    with pytest.raises(ValueError, match="does not match"):
        expand_unit_mask(keep, (3, 2))


# ---------------------------------------------------------------- PyTorch
def torch_mask(prune_fn, w, **kwargs):
    torch = pytest.importorskip("torch")
    module = torch.nn.Module()
    module.weight = torch.nn.Parameter(torch.from_numpy(w.copy()))
    prune_fn(module, "weight", **kwargs)
    return module.weight_mask.numpy().astype(bool)


@pytest.mark.parametrize("shape", [(9,), (30, 20), (6, 3, 5, 5), (300, 784)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
def test_magnitude_mask_matches_l1_unstructured(shape, sparsity):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    w = np.random.default_rng(len(shape) * 1000 + int(sparsity * 100)).standard_normal(shape)
    expected = torch_mask(prune.l1_unstructured, w, amount=float(sparsity))
    assert np.array_equal(magnitude_mask(w, sparsity), expected)
    assert torch.get_default_dtype() == torch.float32


def test_with_ties_torch_drops_the_same_number_but_may_pick_others():
    """torch.topk leaves tied choices unspecified; the count (round(s*n)) always agrees."""
    pytest.importorskip("torch")
    from torch.nn.utils import prune

    w = np.random.default_rng(3).integers(-2, 3, size=(20,)).astype(float)
    for sparsity in (0.3, 0.5, 0.65):
        ours = magnitude_mask(w, sparsity)
        theirs = torch_mask(prune.l1_unstructured, w, amount=sparsity)
        assert (~ours).sum() == (~theirs).sum() == round(sparsity * 20)
        # both drop only entries no larger than any kept one
        assert np.abs(w[~theirs]).max() <= np.abs(w[theirs]).min()


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.8, 0.95])
def test_global_matches_global_unstructured(sparsity):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    rng = np.random.default_rng(int(sparsity * 100))
    arrays = [rng.standard_normal((20, 30)), 0.3 * rng.standard_normal((10, 20)), rng.random(7)]
    modules = []
    for a in arrays:
        m = torch.nn.Module()
        m.weight = torch.nn.Parameter(torch.from_numpy(a.copy()))
        modules.append(m)
    prune.global_unstructured(
        [(m, "weight") for m in modules], pruning_method=prune.L1Unstructured, amount=sparsity
    )
    ours = global_magnitude_masks(arrays, sparsity)
    for m, mask in zip(modules, ours):
        assert np.array_equal(mask, m.weight_mask.numpy().astype(bool))
