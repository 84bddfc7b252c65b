"""Weight sharing: 1-D k-means by hand, the centroid gradient, pruning composition, round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from compression.pruning import current_keep, prune_model
from compression.quantization.sharing import (
    PRUNED,
    SharedWeights,
    assign_nearest,
    deep_compression_bits,
    init_centroids,
    kmeans_1d,
    quantizable_weights,
    share_weights,
)
from tinynet import SGD, CrossEntropyLoss, Linear, Parameter, ReLU, Sequential, gradcheck, strip


def mlp(seed=0):
    tinynet.manual_seed(seed)
    return Sequential(Linear(12, 16), ReLU(), Linear(16, 4))


def batch(seed=0, n=32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    return x, (x[:, :4].argmax(axis=1))


# ------------------------------------------------------------- k-means by hand
def test_kmeans_on_eight_numbers_worked_by_hand():
    # linear init: 0, 10.5, 21; midpoints 5.25, 15.75 -> {0,1,5} {6,7} {19,20,21}
    # means 2, 6.5, 20; midpoints 4.25, 13.25 -> {0,1} {5,6,7} {19,20,21}
    # means 0.5, 6, 20; midpoints 3.25, 13 -> the same clusters: converged
    values = np.array([0.0, 1, 5, 6, 7, 19, 20, 21])
    centroids, assignments = kmeans_1d(values, 3)
    np.testing.assert_array_equal(centroids, [0.5, 6.0, 20.0])
    np.testing.assert_array_equal(assignments, [0, 0, 1, 1, 1, 2, 2, 2])
    # one round stops after the first update, at the first partition's means
    centroids, assignments = kmeans_1d(values, 3, iters=1)
    np.testing.assert_array_equal(centroids, [2.0, 6.5, 20.0])


def test_assignment_is_the_nearest_centroid_and_ties_go_down():
    centroids = np.array([0.0, 10.0, 11.0])
    got = assign_nearest(np.array([-3.0, 4.9, 5.0, 5.1, 10.5, 10.6, 99.0]), centroids)
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 2, 2])


def test_an_empty_cluster_keeps_its_centroid():
    # linear init 0, 5, 10: nobody is nearest to 5, which stays where it is
    centroids, assignments = kmeans_1d(np.array([0.0, 0.0, 0.0, 10.0]), 3)
    np.testing.assert_array_equal(centroids, [0.0, 5.0, 10.0])
    np.testing.assert_array_equal(assignments, [0, 0, 0, 2])


def test_the_three_initialisations():
    values = np.array([-1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 3.0])
    np.testing.assert_allclose(init_centroids(values, 3, "linear"), [-1.0, 1.0, 3.0])
    # density: quantiles at 1/6, 3/6, 5/6: the 2nd, 4th and 6th of the 7 sorted values
    np.testing.assert_allclose(init_centroids(values, 3, "density"), [0.0, 0.2, 0.4])
    random = init_centroids(values, 3, "random", seed=1)
    np.testing.assert_array_equal(random, init_centroids(values, 3, "random", seed=1))
    assert np.all(np.isin(random, values)) and np.all(np.diff(random) >= 0)


def test_linear_init_keeps_the_rare_large_weights():
    # 1000 small weights and two large ones: linear init starts a centroid on each large
    # one; density init puts every centroid among the small ones (Han et al. 2016, Fig. 4)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 0.01, 1000), [-1.0, 1.0]])
    linear = init_centroids(values, 4, "linear")
    density = init_centroids(values, 4, "density")
    assert linear[0] == -1.0 and linear[-1] == 1.0
    assert np.abs(density).max() < 0.05
    centroids, assignments = kmeans_1d(values, 4, "linear")
    np.testing.assert_array_equal(centroids[assignments[-2:]], [-1.0, 1.0])  # kept exactly


@settings(deadline=None, max_examples=25)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=60),
    st.integers(1, 8),
    st.sampled_from(["linear", "random", "density"]),
)
def test_kmeans_properties(values, k, init):
    values = np.array(values)
    k = min(k, values.size)
    centroids, assignments = kmeans_1d(values, k, init, seed=0)
    assert centroids.shape == (k,) and assignments.shape == values.shape
    assert np.all(np.diff(centroids) >= 0)  # sorted
    # every value sits at its nearest centroid
    distances = np.abs(values[:, None] - centroids[None, :])
    nearest = distances.min(1)  # ties between centroids a rounding error apart are allowed
    np.testing.assert_allclose(distances[np.arange(values.size), assignments], nearest, atol=1e-12)
    # never worse than the start (Lloyd only lowers the sum of squares)
    start = init_centroids(values, k, init, seed=0)
    before = ((values - start[assign_nearest(values, start)]) ** 2).sum()
    assert ((values - centroids[assignments]) ** 2).sum() <= before + 1e-9


def test_kmeans_errors_teach():
    with pytest.raises(ValueError, match=r"k \(number of clusters\) must lie in 1..3"):
        kmeans_1d(np.array([1.0, 2.0, 3.0]), 4)
    with pytest.raises(ValueError, match=r"must lie in 1..3.*got 0"):
        kmeans_1d(np.array([1.0, 2.0, 3.0]), 0)
    with pytest.raises(ValueError, match="must be an integer"):
        kmeans_1d(np.array([1.0, 2.0, 3.0]), 2.0)
    with pytest.raises(ValueError, match=r"init must be one of \('linear', 'random', 'density'\)"):
        kmeans_1d(np.array([1.0, 2.0, 3.0]), 2, init="kmeans++")
    with pytest.raises(ValueError, match="NaN or infinite"):
        kmeans_1d(np.array([1.0, np.nan]), 1)
    with pytest.raises(ValueError, match="iters"):
        kmeans_1d(np.array([1.0, 2.0]), 1, iters=0)


# --------------------------------------------------------------- the transform
def test_forward_reads_the_codebook_and_pruned_entries_are_zero():
    t = SharedWeights(np.array([-1.0, 2.0], np.float32), [[0, 1], [1, PRUNED]])
    w = t.forward(np.full((2, 2), 7.0, np.float32))  # the latent value is ignored
    np.testing.assert_array_equal(w, [[-1.0, 2.0], [2.0, 0.0]])
    assert w.dtype == np.float32


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    p = Parameter(np.zeros((2, 3), np.float32))
    t = p.add_transform(SharedWeights([0.5, -0.5, 9.0], [[0, 1, 1], [1, 0, PRUNED]]))
    p.value()
    p.backward(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32))
    # centroid 0: 1 + 5; centroid 1: 2 + 3 + 4; centroid 2: nobody; the pruned 6 goes nowhere
    np.testing.assert_array_equal(t.centroids.grad, [6.0, 9.0, 0.0])
    np.testing.assert_array_equal(p.grad, np.zeros((2, 3)))  # the latent weight gets nothing
    p.value()
    p.backward(np.ones((2, 3), np.float32))  # gradients accumulate, as in PyTorch
    np.testing.assert_array_equal(t.centroids.grad, [8.0, 12.0, 0.0])


def test_gradcheck_of_the_centroids_in_a_model():
    model = mlp()
    shared = share_weights(model, k=5)
    report = gradcheck(model, np.random.default_rng(0).standard_normal((3, 12)))
    assert "0.parametrizations.weight.0.centroids" in report
    assert "2.parametrizations.weight.0.centroids" in report
    assert shared["0.weight"].centroids in model.parameters()


def test_transform_errors():
    with pytest.raises(ValueError, match=r"assignments must lie in 0..1"):
        SharedWeights([0.0, 1.0], [0, 2])
    with pytest.raises(ValueError, match="integers"):
        SharedWeights([0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"shape \(k,\)"):
        SharedWeights([], [0])
    with pytest.raises(ValueError, match=r"applied to a weight of shape \(3,\)"):
        SharedWeights([0.0], [0, 0]).forward(np.zeros(3))


# ------------------------------------------------------------------ the model
def test_share_weights_leaves_k_values_per_layer_and_biases_float():
    model = mlp()
    shared = share_weights(model, bits={"0.weight": 3, "2.weight": 2})
    assert {n: t.k for n, t in shared.items()} == {"0.weight": 8, "2.weight": 4}
    assert {n: t.bits for n, t in shared.items()} == {"0.weight": 3, "2.weight": 2}
    assert len(np.unique(model[0].weight.value())) <= 8
    assert len(np.unique(model[2].weight.value())) <= 4
    assert not model[0].bias.transforms
    assert repr(shared["0.weight"]) == "SharedWeights(k=8, bits=3)"
    only_first = share_weights(mlp(), k=4, include=["0.weight"])
    assert list(only_first) == ["0.weight"]
    assert list(share_weights(mlp(), k=4, exclude_first=True)) == ["2.weight"]


def test_deep_compression_bits_8_for_conv_5_for_fc():
    tinynet.manual_seed(0)
    model = tinynet.models.lenet5_caffe()
    bits = deep_compression_bits(model)
    assert bits == {"0.weight": 8, "2.weight": 8, "5.weight": 5, "7.weight": 5}
    shared = share_weights(model, bits)
    assert [t.k for t in shared.values()] == [256, 256, 32, 32]


def test_share_weights_errors():
    with pytest.raises(ValueError, match="exactly one of bits"):
        share_weights(mlp())
    with pytest.raises(ValueError, match="exactly one of bits"):
        share_weights(mlp(), 2, k=4)
    with pytest.raises(ValueError, match=r"bits for '0.weight' must be an integer in 1..16"):
        share_weights(mlp(), 0)
    with pytest.raises(ValueError, match=r"'2.weight' \(64 kept weights\).*must lie in 1..64"):
        share_weights(mlp(), k=100)
    with pytest.raises(ValueError, match=r"no eligible weight named \['0.bias'\]"):
        share_weights(mlp(), k={"0.bias": 2})
    with pytest.raises(ValueError, match="init must be one of"):
        share_weights(mlp(), k=2, init="uniform")
    model = mlp()
    share_weights(model, k=2)
    with pytest.raises(ValueError, match="already weight-shared"):
        share_weights(model, k=2)
    with pytest.raises(ValueError, match="not Conv2d/Linear weights"):
        quantizable_weights(model, include=["1.weight"])


def test_fine_tuning_the_centroids_with_sgd_lowers_the_loss():
    model = mlp()
    share_weights(model, k=4)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    assert "0.parametrizations.weight.0.centroids" in names
    opt = SGD(params, lr=0.5)
    crit = CrossEntropyLoss()
    x, y = batch()
    losses = []
    for _ in range(30):
        losses.append(crit(model(x), y))
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
    assert losses[-1] < 0.8 * losses[0]
    assert len(np.unique(model[0].weight.value())) <= 4  # still 4 shared values


def test_state_dict_round_trip_rebuilds_codes_and_codebook():
    model = mlp()
    share_weights(model, k=4)
    state = model.state_dict()
    assert "0.parametrizations.weight.0.assignments" in state
    assert state.metadata["transforms"]["0.weight"] == [
        {"type": "SharedWeights", "config": {"k": 4}}
    ]
    fresh = mlp(seed=1)
    fresh.load_state_dict(state)
    t = fresh[0].weight.transforms[0]
    np.testing.assert_array_equal(t.assignments, model[0].weight.transforms[0].assignments)
    np.testing.assert_array_equal(t.centroids.data, model[0].weight.transforms[0].centroids.data)
    x, _ = batch()
    np.testing.assert_array_equal(fresh(x), model(x))
    # strip bakes the shared values in and restores the plain keys
    before = model(x)
    strip(model)
    assert "0.weight" in model.state_dict()
    np.testing.assert_array_equal(model(x), before)


# ------------------------------------------------------- composition with pruning
def test_pruned_weights_join_no_cluster_and_stay_zero_through_training():
    model = mlp()
    prune_model(model, 0.75)
    keep = current_keep(model[0].weight).copy()
    kept_values = model[0].weight.value()[keep]
    shared = share_weights(model, k=4)
    t = shared["0.weight"]
    assert [type(tr).__name__ for tr in model[0].weight.transforms] == ["Mask", "SharedWeights"]
    np.testing.assert_array_equal(t.assignments < 0, ~keep)
    # the codebook is the k-means of the kept weights alone
    centroids, _ = kmeans_1d(kept_values, 4)
    np.testing.assert_allclose(t.centroids.data, centroids.astype(np.float32))
    gradcheck(model, np.random.default_rng(1).standard_normal((3, 12)))
    opt = SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    crit = CrossEntropyLoss()
    x, y = batch()
    for _ in range(20):
        crit(model(x), y)
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
    w = model[0].weight.value()
    assert np.all(w[~keep] == 0.0)
    assert np.isin(w[keep], t.centroids.data).all()
    assert not np.allclose(t.centroids.data, centroids)  # the centroids did move
