"""compression.pruning.thinning: removing units gives a smaller model with the same outputs."""

import numpy as np
import pytest

import tinynet
from compression.pruning import (
    activation_stats,
    add_mask,
    count_parameters,
    current_keep,
    mask_units,
    prune_model,
    prune_units,
    removed_units,
    thin,
    thinning_report,
)
from compression.storage import load_compressed, save_compressed
from tinynet import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
)


def images(n=16, seed=0, shape=(1, 28, 28)):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def outputs(model, x):
    with tinynet.no_grad():
        return model(x)


def assert_same_outputs(masked, thinned, x):
    a, b = outputs(masked, x), outputs(thinned, x)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def randomise_biases(model, seed=0):
    """Default biases are small; make removed units' biases clearly nonzero before masking."""
    rng = np.random.default_rng(seed)
    for _, _, attr, p in model.named_parameter_slots():
        if attr == "bias":
            p.data = rng.uniform(0.1, 0.5, size=p.shape).astype(np.float32)


# ------------------------------------------------------------ model zoo
def test_lenet_300_100_half_of_the_hidden_neurons():
    tinynet.manual_seed(0)
    model = tinynet.models.lenet_300_100()
    randomise_biases(model)
    original = model.state_dict()
    keep = prune_units(model, 0.5)
    assert sorted(keep) == ["1", "3"] and keep["1"].sum() == 150 and keep["3"].sum() == 50
    thinned = thin(model, keep)
    assert isinstance(thinned, Sequential) and thinned is not model
    assert [p.shape for p in thinned.parameters()] == [
        (150, 784),
        (150,),
        (50, 150),
        (50,),
        (10, 50),
        (10,),
    ]
    assert all(not p.transforms for p in thinned.parameters())  # plain and dense
    assert count_parameters(model) == 266_610 and count_parameters(thinned) == 125_810
    assert list(thinned.state_dict()) == list(
        tinynet.strip(tinynet.models.lenet_300_100()).state_dict()
    )
    x = images()
    assert_same_outputs(model, thinned, x)
    k1, k3 = keep["1"], keep["3"]
    np.testing.assert_array_equal(thinned[1].weight.data, original["1.weight"][k1])
    np.testing.assert_array_equal(thinned[3].weight.data, original["3.weight"][k3][:, k1])
    np.testing.assert_array_equal(thinned[5].weight.data, original["5.weight"][:, k3])
    report = thinning_report(model, thinned)
    assert "266,610 -> 125,810" in report and "(150, 784)" in report


def test_masking_the_bias_matters():
    """A removed unit with zero weights but a bias still sends ReLU(bias) onwards."""
    tinynet.manual_seed(0)
    model = tinynet.models.lenet_300_100()
    randomise_biases(model)
    keep = {"1": np.arange(300) % 2 == 0}
    thinned = thin(model, keep)
    weights_only = tinynet.models.lenet_300_100()
    weights_only.load_state_dict(model.state_dict())
    prune_model(weights_only, 0.0)  # attach masks
    add_mask(weights_only[1].weight, np.repeat(keep["1"][:, None], 784, axis=1))
    x = images(4)
    assert not np.allclose(outputs(weights_only, x), outputs(thinned, x), atol=1e-3)
    mask_units(weights_only, "1", keep["1"])  # now the bias too
    assert_same_outputs(weights_only, thinned, x)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_caffe"])
def test_lenets_filters_removed_across_the_flatten(name):
    tinynet.manual_seed(1)
    model = tinynet.models.MODELS[name]()
    randomise_biases(model)
    original = model.state_dict()
    keep = prune_units(model, 0.5, p=2)
    thinned = thin(model)  # found from the masks
    assert {k: v.tolist() for k, v in removed_units(model).items()} == {
        k: v.tolist() for k, v in keep.items()
    }
    assert_same_outputs(model, thinned, images())
    assert count_parameters(thinned) < count_parameters(model) / 3
    # the first Linear lost each removed channel's H*W block of input columns
    conv, fc = ("3", "7") if name == "lenet5" else ("2", "5")
    channels = keep[conv]
    hw = original[f"{fc}.weight"].shape[1] // channels.size  # 5*5 or 4*4
    kept_fc = original[f"{fc}.weight"][keep[fc]]
    blocks = kept_fc.reshape(kept_fc.shape[0], channels.size, hw)[:, channels]
    np.testing.assert_array_equal(getattr(thinned, fc).weight.data, blocks.reshape(len(blocks), -1))


def conv_bn_model():
    tinynet.manual_seed(2)
    model = Sequential(
        Conv2d(1, 6, 3, padding=1),
        BatchNorm2d(6),
        ReLU(),
        MaxPool2d(2),
        Conv2d(6, 8, 3),
        BatchNorm2d(8),
        ReLU(),
        Flatten(),
        Dropout(0.3),
        Linear(8 * 2 * 2, 12),
        BatchNorm1d(12),
        ReLU(),
        Linear(12, 3),
    )
    randomise_biases(model)
    rng = np.random.default_rng(2)
    for layer in model:
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):  # non-trivial statistics and affine
            n = layer.num_features
            layer.running_mean = rng.standard_normal(n).astype(np.float32)
            layer.running_var = rng.uniform(0.5, 2, n).astype(np.float32)
            layer.weight.data = rng.uniform(0.5, 1.5, n).astype(np.float32)
            layer.bias.data = rng.uniform(0.2, 0.6, n).astype(np.float32)
    return model


def test_conv_batchnorm_model_in_eval_and_training_mode():
    model = conv_bn_model()
    original = {k: v.copy() for k, v in model.state_dict().items()}
    keep = prune_units(model, {"0": 0.5, "4": 0.25, "9": 0.5})
    thinned = thin(model)
    x = images(8, shape=(1, 8, 8))
    model.eval()
    thinned.eval()
    assert_same_outputs(model, thinned, x)
    bn = thinned[1]
    assert bn.num_features == 3
    np.testing.assert_array_equal(bn.running_mean, original["1.running_mean"][keep["0"]])
    np.testing.assert_array_equal(bn.running_var, original["1.running_var"][keep["0"]])
    np.testing.assert_array_equal(bn.weight.data, original["1.weight"][keep["0"]])
    assert thinned[10].num_features == 6 and thinned[5].num_features == 6
    assert thinned[9].weight.shape == (6, 6 * 2 * 2)
    model.train()  # batch statistics: a removed channel is 0 in both models
    thinned.train()
    model[8].p = thinned[8].p = 0.0  # Dropout would draw different masks
    assert_same_outputs(model, thinned, x)


def test_existing_unstructured_masks_are_sliced_consistently():
    tinynet.manual_seed(3)
    model = tinynet.models.lenet_300_100()
    prune_model(model, 0.7)  # unstructured first
    before = current_keep(model[3].weight).copy()
    keep = prune_units(model, 0.5)
    thinned = thin(model, keep)
    expected = before[keep["3"]][:, keep["1"]]
    assert [type(t).__name__ for t in thinned[3].weight.transforms] == ["Mask"]
    np.testing.assert_array_equal(current_keep(thinned[3].weight), expected)
    assert_same_outputs(model, thinned, images())
    optimizer = tinynet.SGD(thinned.parameters(), lr=0.1, momentum=0.9)
    crit = CrossEntropyLoss()
    x, y = images(8), np.arange(8) % 10
    for _ in range(3):  # the thinned model trains, and its masks hold
        optimizer.zero_grad()
        crit(thinned(x), y)
        thinned.backward(crit.backward())
        optimizer.step()
    with tinynet.no_grad():
        assert (thinned[3].weight.value()[~expected] == 0).all()


def test_dead_units_found_by_activations_can_go_without_masks():
    tinynet.manual_seed(4)
    model = Sequential(Flatten(), Linear(16, 8), ReLU(), Linear(8, 3))
    model[1].bias.data[[1, 5]] = -100.0  # never active on this data
    x = images(32, shape=(1, 4, 4))
    stats = activation_stats(model, model[2], x)
    assert stats.zero_fraction[[1, 5]].tolist() == [1.0, 1.0]
    keep = {"1": stats.zero_fraction < 1}
    thinned = thin(model, keep)
    np.testing.assert_allclose(outputs(thinned, x), outputs(model, x), rtol=1e-6, atol=1e-7)


def test_thinning_leaves_the_original_and_the_generator_alone():
    tinynet.manual_seed(5)
    model = tinynet.models.lenet_300_100()
    prune_units(model, 0.5)
    before = model.state_dict()
    rng_state = tinynet.get_rng().bit_generator.state
    thin(model)
    assert tinynet.get_rng().bit_generator.state == rng_state
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_thinned_model_survives_the_compressed_file(tmp_path):
    model = conv_bn_model()
    prune_units(model, 0.5)
    thinned = thin(model).eval()
    save_compressed(thinned, tmp_path / "thin.tnc")
    loaded = load_compressed(tmp_path / "thin.tnc")
    x = images(4, shape=(1, 8, 8))
    np.testing.assert_array_equal(outputs(loaded, x), outputs(thinned, x))


# ----------------------------------------------------------------- errors
def test_the_classes_are_never_removed():
    model = tinynet.models.lenet_300_100()
    with pytest.raises(ValueError, match="never removed"):
        thin(model, {"5": np.arange(10) < 5})
    with pytest.raises(ValueError, match="never removed"):
        prune_units(model, 0.5, layers=["1", "5"])
    thin(model, {"5": np.ones(10, bool)})  # keeping every class is fine


def test_bad_keep_vectors():
    model = tinynet.models.lenet_300_100()
    with pytest.raises(ValueError, match="keep at least one"):
        thin(model, {"1": np.zeros(300, bool)})
    with pytest.raises(ValueError, match="shape \\(300,\\)"):
        thin(model, {"1": np.ones(30, bool)})
    with pytest.raises(ValueError, match="not a Linear/Conv2d"):
        thin(model, {"2": np.ones(300, bool)})
    with pytest.raises(ValueError, match="flat tinynet Sequential"):
        thin(Linear(3, 2), {})


def test_layers_that_do_not_keep_zero_at_zero_are_refused():
    model = Sequential(Linear(4, 6), Sigmoid(), Linear(6, 2))  # sigmoid(0) = 0.5
    with pytest.raises(ValueError, match="Sigmoid"):
        thin(model, {"0": np.arange(6) < 3})
    with pytest.raises(ValueError, match="Sigmoid"):
        prune_units(model, 0.5)


def test_prune_units_checks_its_arguments():
    model = tinynet.models.lenet_300_100()
    with pytest.raises(ValueError, match="sparsity"):
        prune_units(model, 1.5)
    with pytest.raises(ValueError, match="not Linear/Conv2d"):
        prune_units(model, 0.5, layers=["2"])
    with pytest.raises(ValueError, match="shape \\(300,\\)"):
        prune_units(model, 0.5, layers=["1"], scores={"1": np.ones(5)})
    with pytest.raises(ValueError, match="nothing to prune"):
        prune_units(Sequential(Linear(3, 2)), 0.5)


def test_prune_units_with_given_scores():
    model = tinynet.models.lenet_300_100()
    scores = {"1": np.arange(300.0), "3": -np.arange(100.0)}
    keep = prune_units(model, 0.5, scores=scores)
    assert keep["1"].tolist() == [False] * 150 + [True] * 150
    assert keep["3"].tolist() == [True] * 50 + [False] * 50


def test_removed_units_needs_the_bias_and_batchnorm_zero_too():
    tinynet.manual_seed(6)
    model = Sequential(Linear(4, 5), BatchNorm1d(5), ReLU(), Linear(5, 2))
    prune_model(model, 0.0)
    rows = np.ones((5, 4), bool)
    rows[2] = False
    add_mask(model[0].weight, rows)
    assert removed_units(model) == {}  # bias and BatchNorm still nonzero
    mask_units(model, "0", np.arange(5) != 2)
    assert removed_units(model)["0"].tolist() == [True, True, False, True, True]


def test_prune_units_again_is_absolute_and_only_grows():
    tinynet.manual_seed(7)
    model = tinynet.models.lenet_300_100()
    first = prune_units(model, 0.5)
    again = prune_units(model, 0.3)  # less than it has: nothing more goes
    assert np.array_equal(again["1"], first["1"]) and again["1"].sum() == 150
    more = prune_units(model, 0.8)
    assert more["1"].sum() == 60 and not (more["1"] & ~first["1"]).any()
    assert_same_outputs(model, thin(model, more), images())
