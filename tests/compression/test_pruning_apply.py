"""compression.pruning.apply: masks on models that hold through training and saving."""

import numpy as np
import pytest

import tinynet
from compression.pruning import (
    add_mask,
    current_keep,
    eligible_parameters,
    make_permanent,
    prune_model,
    rewind,
    snapshot,
    sparsity_report,
)
from compression.storage import load_compressed, save_compressed
from tinynet import CrossEntropyLoss, Linear, Mask, ReLU, Sequential, Transform


def small_mlp(seed=0):
    tinynet.manual_seed(seed)
    return tinynet.models.mlp((20, 16, 12, 4))


def data(seed=0, n=32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 20)).astype(np.float32), rng.integers(0, 4, size=n)


def train_steps(model, optimizer, steps=40):
    x, y = data()
    crit = CrossEntropyLoss()
    for _ in range(steps):
        optimizer.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())
        optimizer.step()
    return model


def effective(param):
    with tinynet.no_grad():
        return param.value()


# ------------------------------------------------------------- eligibility
def test_default_eligibility_is_conv_and_linear_weights():
    model = tinynet.models.lenet5()
    names = [n for n, _ in eligible_parameters(model)]
    assert names == ["0.weight", "3.weight", "7.weight", "9.weight", "11.weight"]
    names = [n for n, _ in eligible_parameters(model, exclude_first=True, prune_bias=True)]
    assert names[:2] == ["3.weight", "3.bias"] and len(names) == 8
    assert [n for n, _ in eligible_parameters(model, include=["7.weight"])] == ["7.weight"]


def test_include_must_name_candidates():
    with pytest.raises(ValueError, match="prune_bias=True"):
        eligible_parameters(tinynet.models.lenet5(), include=["7.bias"])


def test_pruning_a_model_with_nothing_eligible_says_so():
    with pytest.raises(ValueError, match="nothing to prune"):
        prune_model(Sequential(ReLU(), tinynet.Flatten()), 0.5)
    with pytest.raises(ValueError, match="nothing to prune"):
        prune_model(Sequential(Linear(3, 2)), 0.5, exclude_first=True)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.9", float("nan")])
def test_prune_model_names_a_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity"):
        prune_model(small_mlp(), bad)


def test_bad_scope_and_dict_in_global_scope():
    with pytest.raises(ValueError, match="scope"):
        prune_model(small_mlp(), 0.5, scope="model")
    with pytest.raises(ValueError, match="scope='layer'"):
        prune_model(small_mlp(), {"1.weight": 0.5}, scope="global")
    with pytest.raises(ValueError, match="not eligible"):
        prune_model(small_mlp(), {"1.bias": 0.5})


# --------------------------------------------------------- exact sparsities
def test_layer_wise_sparsity_is_exact_on_lenet_300_100():
    tinynet.manual_seed(0)
    model = tinynet.models.lenet_300_100()
    summary = prune_model(model, 0.9)
    assert [r.name for r in summary.rows] == ["1.weight", "3.weight", "5.weight"]
    for row, n in zip(summary.rows, (235_200, 30_000, 1_000)):
        assert row.total == n and row.total - row.kept == round(0.9 * n)
    assert np.count_nonzero(effective(model[1].weight)) == 235_200 - 211_680
    assert model[1].bias.transforms == []  # biases not pruned by default
    assert "biases not pruned" in summary.eligibility and "first layer included" in str(summary)


def test_per_parameter_sparsities():
    model = tinynet.models.lenet_300_100()
    summary = prune_model(model, {"1.weight": 0.92, "3.weight": 0.91})  # Han et al.'s 8% / 9%
    assert [r.kept for r in summary.rows] == [235_200 - round(0.92 * 235_200), 2_700]
    assert model[5].weight.transforms == []


def test_global_and_layer_wise_on_a_hand_example():
    def model():
        m = Sequential(Linear(3, 2), Linear(2, 2))
        m[0].weight.data = np.array([[0.1, 0.9, -0.5], [0.7, -0.02, 0.4]], np.float32)
        m[1].weight.data = np.array([[0.3, -0.2], [0.05, 0.6]], np.float32)
        return m

    g = model()  # 10 weights, drop 5: 0.02, 0.05, 0.1, 0.2, 0.3
    summary = prune_model(g, 0.5, scope="global")
    assert current_keep(g[0].weight).astype(int).tolist() == [[0, 1, 1], [1, 0, 1]]
    assert current_keep(g[1].weight).astype(int).tolist() == [[0, 0], [0, 1]]
    assert [round(r.threshold, 6) for r in summary.rows] == [0.1, 0.3]
    assert summary.kept == 5 and summary.sparsity == 0.5
    m = model()  # 3 of the first (0.02, 0.1, 0.4), 2 of the second (0.05, 0.2)
    summary = prune_model(m, 0.5)
    assert current_keep(m[0].weight).astype(int).tolist() == [[0, 1, 1], [1, 0, 0]]
    assert current_keep(m[1].weight).astype(int).tolist() == [[1, 0], [0, 1]]
    assert [round(r.threshold, 6) for r in summary.rows] == [0.4, 0.2]


def test_global_sparsity_is_exact_over_all_eligible_entries():
    tinynet.manual_seed(0)
    model = tinynet.models.lenet5()
    summary = prune_model(model, 0.8, scope="global", prune_bias=True)
    total = sum(p.size for _, p in eligible_parameters(model, prune_bias=True))
    assert summary.total == total and total - summary.kept == round(0.8 * total)
    sparsities = [r.sparsity for r in summary.rows]
    assert max(sparsities) - min(sparsities) > 0.1  # one threshold, different layer sparsities


# ------------------------------------------------------------- composition
def test_pruning_again_only_increases_sparsity():
    model = small_mlp()
    prune_model(model, 0.5)
    first = current_keep(model[1].weight).copy()
    prune_model(model, 0.8)
    second = current_keep(model[1].weight)
    assert not (second & ~first).any()  # nothing grows back
    assert (~second).sum() == round(0.8 * second.size)
    assert [type(t) for t in model[1].weight.transforms] == [Mask]  # still one Mask
    prune_model(model, 0.3)  # less than it has: left as it is
    assert np.array_equal(current_keep(model[1].weight), second)


class Scale(Transform):
    """A test transform: multiply each entry by a fixed factor (unregistered)."""

    def __init__(self, factor):
        self.factor = factor

    def forward(self, w):
        return w * self.factor

    def backward(self, d_out):
        return d_out * self.factor


def test_masks_rank_the_effective_value_and_go_first_in_the_chain():
    layer = Linear(4, 1)
    layer.weight.data = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    layer.weight.add_transform(Scale(np.array([[10.0, 1.0, 1.0, 0.1]], np.float32)))
    prune_model(Sequential(layer), 0.5)  # effective 10, 2, 3, 0.4: drop 0.4 and 2
    assert [type(t).__name__ for t in layer.weight.transforms] == ["Mask", "Scale"]
    assert current_keep(layer.weight).astype(int).tolist() == [[1, 0, 1, 0]]
    np.testing.assert_array_equal(effective(layer.weight), [[10, 0, 3, 0]])


def test_add_mask_checks_the_shape():
    with pytest.raises(ValueError, match="shape"):
        add_mask(Linear(3, 2).weight, np.ones((3, 2), bool))


# ------------------------------------------------- masks hold through training
@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: tinynet.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: tinynet.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: tinynet.Adam(p, lr=1e-2, weight_decay=1e-2),
        lambda p: tinynet.AdamW(p, lr=1e-2),
    ],
)
def test_pruned_weights_stay_exactly_zero_through_training(make_optimizer):
    model = small_mlp()
    prune_model(model, 0.7, prune_bias=True)
    keeps = {n: current_keep(p).copy() for n, p in eligible_parameters(model, prune_bias=True)}
    optimizer = make_optimizer(model.parameters())
    x, y = data()
    crit = CrossEntropyLoss()
    for _ in range(60):
        optimizer.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())
        for name, param in eligible_parameters(model, prune_bias=True):
            assert (param.grad[~keeps[name]] == 0).all()  # gradients are masked
        optimizer.step()
    for name, param in eligible_parameters(model, prune_bias=True):
        assert (effective(param)[~keeps[name]] == 0).all()  # exactly, not approximately
        assert np.array_equal(current_keep(param), keeps[name])
        assert (effective(param)[keeps[name]] != 0).all()


def test_make_permanent_zeroes_latent_values_and_optimizer_state():
    model = small_mlp()
    optimizer = tinynet.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    train_steps(model, optimizer, 5)  # momentum buffers everywhere
    prune_model(model, 0.6)
    w = model[1].weight
    keep = current_keep(w)
    assert (w.data[~keep] != 0).all()  # latent values are still there under the mask
    make_permanent(model, optimizer)
    assert (w.data[~keep] == 0).all() and (w.data[keep] != 0).all()
    assert (optimizer.state[w]["momentum_buffer"][~keep] == 0).all()
    assert (optimizer.state[w]["momentum_buffer"][keep] != 0).all()
    train_steps(model, optimizer, 20)  # with weight decay: latent zeros stay zero too
    assert (w.data[~keep] == 0).all()
    tinynet.strip(model)  # PyTorch prune.remove: nothing stale comes back
    assert (model[1].weight.data[~keep] == 0).all()


def test_make_permanent_resets_adam_moments():
    model = small_mlp()
    optimizer = tinynet.Adam(model.parameters(), lr=1e-2)
    train_steps(model, optimizer, 3)
    prune_model(model, 0.5)
    make_permanent(model, optimizer)
    state = optimizer.state[model[3].weight]
    keep = current_keep(model[3].weight)
    assert (state["exp_avg"][~keep] == 0).all() and (state["exp_avg_sq"][~keep] == 0).all()
    assert state["step"] == 3
    train_steps(model, optimizer, 10)
    assert (model[3].weight.data[~keep] == 0).all()  # 0 / (0 + eps) = 0: never moves


def test_snapshot_and_rewind_keep_the_masks():
    model = small_mlp()
    initial = snapshot(model)
    optimizer = tinynet.Adam(model.parameters(), lr=1e-2)
    train_steps(model, optimizer, 5)
    prune_model(model, 0.8)
    rewind(model, initial, optimizer)
    keep = current_keep(model[1].weight)
    np.testing.assert_array_equal(model[1].weight.data, np.where(keep, initial["1.weight"], 0))
    np.testing.assert_array_equal(model[1].bias.data, initial["1.bias"])
    assert model[1].weight not in optimizer.state  # Adam starts afresh, step count included
    with pytest.raises(ValueError, match="no parameter"):
        rewind(model, {"9.weight": np.zeros(3)})


# --------------------------------------------------------------- saving
def test_masks_survive_state_dict_files(tmp_path):
    model = small_mlp()
    prune_model(model, 0.75, prune_bias=True)
    path = tinynet.save(model, tmp_path / "pruned.npz")
    fresh = small_mlp(seed=1)
    fresh.load_state_dict(tinynet.load(path))
    x, _ = data(1)
    for (_, a), (_, b) in zip(
        eligible_parameters(model, prune_bias=True), eligible_parameters(fresh, prune_bias=True)
    ):
        assert np.array_equal(current_keep(a), current_keep(b))
        assert np.array_equal(a.data, b.data)
    with tinynet.no_grad():
        np.testing.assert_array_equal(fresh(x), model(x))
    optimizer = tinynet.SGD(fresh.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    train_steps(fresh, optimizer, 10)  # the reloaded masks still hold
    assert (effective(fresh[1].weight)[~current_keep(model[1].weight)] == 0).all()


def test_masks_survive_the_compressed_file(tmp_path):
    model = small_mlp()
    prune_model(model, 0.9)
    nbytes = save_compressed(model, tmp_path / "pruned.tnc")
    assert nbytes == (tmp_path / "pruned.tnc").stat().st_size
    loaded = load_compressed(tmp_path / "pruned.tnc")
    for (_, a), (_, b) in zip(eligible_parameters(model), eligible_parameters(loaded)):
        assert np.array_equal(current_keep(a), current_keep(b))
        np.testing.assert_array_equal(effective(a), effective(b))
    x, _ = data(2)
    model.eval()
    with tinynet.no_grad():
        np.testing.assert_array_equal(loaded(x), model(x))


# ----------------------------------------------------------------- report
def test_sparsity_report_counts_weights_and_biases():
    tinynet.manual_seed(0)
    model = tinynet.models.lenet_300_100()
    prune_model(model, 0.9)
    report = sparsity_report(model)
    rows = {r["name"]: r for r in report.rows}
    assert rows["1.weight"]["kept"] == 23_520 and rows["1.weight"]["masked"]
    assert rows["1.bias"]["kept"] == 300 and not rows["1.bias"]["masked"]
    assert report.total == 266_610
    assert report.kept == 23_520 + 3_000 + 100 + 410
    assert abs(report.compression - 266_610 / 27_030) < 1e-12
    text = str(report)
    assert "1.weight (mask)" in text and "total" in text and "fewer nonzero" in text
    tinynet.strip(model)  # zeros baked in: the same counts
    assert sparsity_report(model).kept == report.kept


# --------------------------------------------------------------- PyTorch
def torch_lenet_300_100(model):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 300),
        torch.nn.ReLU(),
        torch.nn.Linear(300, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    ).double()
    net.load_state_dict(
        {k: torch.from_numpy(v.astype(np.float64)) for k, v in model.state_dict().items()}
    )
    return net


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_layer_wise_matches_l1_unstructured(sparsity):
    pytest.importorskip("torch")
    from torch.nn.utils import prune

    tinynet.manual_seed(3)
    model = tinynet.models.lenet_300_100().astype(np.float64)
    net = torch_lenet_300_100(model)
    prune_model(model, sparsity)
    for i in (1, 3, 5):
        prune.l1_unstructured(net[i], "weight", amount=sparsity)
        assert np.array_equal(
            current_keep(model[i].weight), net[i].weight_mask.numpy().astype(bool)
        )


def test_global_matches_global_unstructured():
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    tinynet.manual_seed(4)
    model = tinynet.models.lenet_300_100().astype(np.float64)
    net = torch_lenet_300_100(model)
    prune_model(model, 0.95, scope="global")
    params = [(net[i], "weight") for i in (1, 3, 5)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.95)
    for i in (1, 3, 5):
        assert np.array_equal(
            current_keep(model[i].weight), net[i].weight_mask.numpy().astype(bool)
        )
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28))
    with tinynet.no_grad(), torch.no_grad():
        np.testing.assert_allclose(model(x), net(torch.from_numpy(x)).numpy(), atol=1e-12)
