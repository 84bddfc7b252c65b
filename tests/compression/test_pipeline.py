"""Deep Compression end to end: each stage's known behaviour, honest files, the Han-format table."""

import copy
import os

import numpy as np
import pytest

import tinynet
from compression.pipeline import (
    PAPER,
    DeepCompressionRecipe,
    centroid_counts,
    check_recipe,
    deep_compression,
    fine_tune_shared,
    han_table,
    prune_round,
    share_stage,
    sharing_groups,
)
from compression.pruning import current_keep
from compression.quantization.sharing import SharedWeights
from compression.storage import load_compressed, save_compressed, size_report
from tinynet.data import load_mnist_mini
from tinynet.grad_mode import no_grad


@pytest.fixture(scope="module")
def data():
    mini = load_mnist_mini()
    return (mini.x_train[:600], mini.y_train[:600]), (mini.x_heldout[:300], mini.y_heldout[:300])


def small_mlp(seed=0):
    tinynet.manual_seed(seed)
    return tinynet.Sequential(
        tinynet.Flatten(), tinynet.Linear(784, 48), tinynet.ReLU(), tinynet.Linear(48, 10)
    )


@pytest.fixture(scope="module")
def dense(data):
    """A small MLP trained for 3 epochs on 600 embedded images (about 70-80% held-out)."""
    (x, y), _ = data
    model = small_mlp()
    opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tinynet.fit(model, (x, y), tinynet.CrossEntropyLoss(), opt, 3, progress=False)
    return model


class Retrainer:
    """A tiny ``retrain(model, epochs, params, seed)`` that records its calls."""

    def __init__(self, data, lr=0.01):
        self.x, self.y = data[0]
        self.lr = lr
        self.calls = []

    def __call__(self, model, epochs, params, seed):
        self.calls.append({"epochs": epochs, "params": params, "seed": seed})
        opt = tinynet.SGD(
            model.parameters() if params is None else params, lr=self.lr, momentum=0.9
        )
        tinynet.fit(
            model,
            (self.x, self.y),
            tinynet.CrossEntropyLoss(),
            opt,
            epochs,
            seed=seed,
            progress=False,
        )


def outputs(model, x):
    model.eval()
    with no_grad():
        return model(x)


RECIPE = DeepCompressionRecipe(rounds=(0.5, 0.8, 0.9), prune_epochs=1, bits=4, share_epochs=1)


@pytest.fixture(scope="module")
def result(dense, data, tmp_path_factory):
    retrain = Retrainer(data)
    out = tmp_path_factory.mktemp("pipeline")
    res = deep_compression(dense, RECIPE, retrain, data[1], out, lr=0.01, seed=3, cache_key="mlp")
    return res, retrain, out


# ------------------------------------------------------------------- pruning
def test_prune_round_global_drops_exactly_round_s_times_n(dense, data):
    model = copy.deepcopy(dense)
    prune_round(model, 0.8, Retrainer(data), epochs=1, seed=0, scope="global")
    kept = sum(int(current_keep(m.weight).sum()) for m in (model[1], model[3]))
    total = 784 * 48 + 48 * 10
    assert total - kept == round(0.8 * total)  # one threshold, exact count
    np.testing.assert_array_equal(model[1].weight.value() == 0, ~current_keep(model[1].weight))


def test_prune_round_per_layer_dict_is_exact_per_layer(dense, data):
    model = copy.deepcopy(dense)
    prune_round(model, {"1.weight": 0.9, "3.weight": 0.25}, Retrainer(data), epochs=0, seed=0)
    assert int((~current_keep(model[1].weight)).sum()) == round(0.9 * 784 * 48)
    assert int((~current_keep(model[3].weight)).sum()) == round(0.25 * 480)


# ------------------------------------------------------------------- sharing
def test_centroid_counts_reserve_the_zero_code_of_pruned_layers(dense, data):
    model = copy.deepcopy(dense)
    assert centroid_counts(model, 3) == {"1.weight": 8, "3.weight": 8}  # nothing pruned: 2^b
    prune_round(model, {"1.weight": 0.5}, Retrainer(data), epochs=0, seed=0)
    assert centroid_counts(model, 3) == {"1.weight": 7, "3.weight": 8}
    assert centroid_counts(model, 3, zero_code=False) == {"1.weight": 8, "3.weight": 8}
    assert centroid_counts(model, {"3.weight": 16}) == {"3.weight": 480}  # k <= weights


@pytest.mark.parametrize("bits", [1, 3, 5])
def test_shared_layer_has_at_most_2_to_the_b_values_and_keeps_its_mask(dense, data, bits):
    model = copy.deepcopy(dense)
    prune_round(model, 0.7, Retrainer(data), epochs=0, seed=0)
    keep = {name: current_keep(m.weight).copy() for name, m in (("1", model[1]), ("3", model[3]))}
    share_stage(model, bits)
    before = [t.centroids.data.copy() for t in (model[1].weight.transforms[1],)]
    fine_tune_shared(model, Retrainer(data), epochs=1, lr=0.01, seed=0)
    assert not np.array_equal(model[1].weight.transforms[1].centroids.data, before[0])
    for name, layer in (("1", model[1]), ("3", model[3])):
        assert isinstance(layer.weight.transforms[1], SharedWeights)
        w = layer.weight.value()
        assert len(np.unique(w[w != 0])) <= 2**bits - 1  # the last code is the zero
        np.testing.assert_array_equal(w[~keep[name]], 0)  # pruned weights stay exactly zero
        np.testing.assert_array_equal(current_keep(layer.weight), keep[name])


def test_sharing_groups_step_each_layer_at_lr_k_over_kept(dense, data):
    model = copy.deepcopy(dense)
    prune_round(model, {"1.weight": 0.9}, Retrainer(data), epochs=0, seed=0)
    share_stage(model, {"1.weight": 4, "3.weight": 2})
    groups = sharing_groups(model, lr=0.1)
    kept1 = round(0.1 * 784 * 48)
    assert groups[0]["params"] == [model[1].weight.transforms[1].centroids]
    assert groups[0]["lr"] == pytest.approx(0.1 * 15 / kept1)
    assert groups[1]["lr"] == pytest.approx(0.1 * 4 / 480) and groups[1]["weight_decay"] == 0
    rest = groups[2]["params"]  # the biases; the latent weights under SharedWeights are left out
    assert rest == [model[1].bias, model[3].bias] and groups[2]["lr"] == 0.1
    assert len(sharing_groups(model, 0.1, train_rest=False)) == 2
    with pytest.raises(ValueError, match="no weight-shared layer"):
        sharing_groups(small_mlp(), 0.1)


# ----------------------------------------------------------- the whole pipeline
def test_pipeline_records_every_stage_from_its_file(result):
    res, retrain, out = result
    assert [s.name for s in res.stages] == ["dense", "pruned", "shared", "huffman"]
    for stage in res.stages:
        assert stage.file_bytes == os.path.getsize(stage.path)
        assert stage.parameters == 784 * 48 + 48 + 48 * 10 + 10
        assert stage.ratio == pytest.approx(4 * stage.parameters / stage.file_bytes)
    dense_, pruned, shared, huffman = res.stages
    assert dense_.kept == 1.0 and pruned.kept == pytest.approx(0.1, abs=1e-4)
    assert not (dense_.huffman or pruned.huffman or shared.huffman) and huffman.huffman
    assert dense_.file_bytes > pruned.file_bytes > shared.file_bytes >= huffman.file_bytes
    assert shared.accuracy == huffman.accuracy  # Huffman coding is lossless
    assert [r["kept"] for r in res.rounds] == pytest.approx([0.5, 0.2, 0.1], abs=1e-4)
    # three pruning rounds with params=None, then the centroid groups; seeds 3 + 1000 i
    assert [c["epochs"] for c in retrain.calls] == [1, 1, 1, 1]
    assert [c["seed"] for c in retrain.calls] == [1003, 2003, 3003, 4003]
    assert [c["params"] is None for c in retrain.calls] == [True, True, True, False]


def test_final_file_loads_back_in_a_fresh_model_with_the_stated_accuracy(result, data):
    res, _, _ = result
    x, y = data[1]
    fresh = load_compressed(res.final.path)
    assert tinynet.evaluate(fresh, x, y)["accuracy"] == res.final.accuracy
    np.testing.assert_array_equal(outputs(fresh, x), outputs(res.model, x))
    # the shared file holds the same weights: the same outputs, bit for bit
    np.testing.assert_array_equal(
        outputs(load_compressed(res.stage("shared").path), x), outputs(fresh, x)
    )


def test_rerun_with_the_same_cache_key_resumes_instead_of_retraining(result, dense, data):
    res, _, out = result
    again = Retrainer(data)
    res2 = deep_compression(dense, RECIPE, again, data[1], out, lr=0.01, seed=3, cache_key="mlp")
    assert again.calls == []  # nothing retrained
    assert [s.cached for s in res2.stages] == [False, True, True, False]
    assert [s.file_bytes for s in res2.stages] == [s.file_bytes for s in res.stages]
    assert [s.accuracy for s in res2.stages] == [s.accuracy for s in res.stages]
    # a longer schedule resumes after the three cached rounds: one round, then sharing
    longer = DeepCompressionRecipe(
        rounds=(0.5, 0.8, 0.9, 0.95), prune_epochs=1, bits=4, share_epochs=1
    )
    third = Retrainer(data)
    deep_compression(dense, longer, third, data[1], out, lr=0.01, seed=3, cache_key="mlp")
    assert [c["seed"] for c in third.calls] == [4003, 5003]


def test_fresh_ignores_the_cache(result, dense, data):
    _, _, out = result
    again = Retrainer(data)
    recipe = DeepCompressionRecipe(rounds=(0.5,), prune_epochs=1, bits=4, share_epochs=0)
    deep_compression(
        dense, recipe, again, data[1], out, lr=0.01, seed=3, cache_key="mlp", fresh=True
    )
    assert len(again.calls) == 1


def test_huffman_stage_is_never_larger_than_the_uncoded_file(tmp_path):
    # 60 weights: the code tables and their header entries cost more than Huffman saves
    tinynet.manual_seed(0)
    tiny = tinynet.Sequential(tinynet.Linear(20, 3))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 20)).astype(np.float32), rng.integers(0, 3, 30)
    recipe = DeepCompressionRecipe(rounds=(0.5,), prune_epochs=0, bits=2, share_epochs=0)
    res = deep_compression(tiny, recipe, None, (x, y), tmp_path, lr=0.01)
    coded = save_compressed(res.model, tmp_path / "coded.tnc", use_huffman=True)
    assert coded > res.stage("shared").file_bytes  # what Huffman would have cost here
    assert res.final.file_bytes == res.stage("shared").file_bytes and not res.final.huffman
    assert "Huffman coding made the file larger" in res.notes[0]
    assert han_table(res.model, huffman=res.final.huffman).totals()[1] == res.final.file_bytes


# ------------------------------------------------------------------ the table
def test_table_totals_equal_the_files_lengths(result):
    res, _, _ = result
    table = han_table(res.model, huffman=res.final.huffman)
    assert table.totals() == (res.stage("shared").file_bytes, res.final.file_bytes)
    before, after = table.totals()
    assert sum(r.nbytes[0] for r in table.rows) + table.header_bytes[0] == before
    assert table.ratios()[1] == pytest.approx(res.final.ratio)
    first = table.rows[0]
    assert (first.layer, first.weights, first.parameters) == ("1", 784 * 48, 784 * 48 + 48)
    assert first.kept == int(current_keep(res.model[1].weight).sum())
    report = size_report(res.model, use_huffman=False, reference_files=False)
    weight_row = next(r for r in report.rows if r["tensor"] == "1.weight")
    assert first.value_bits[0] == weight_row["values_bits"]
    assert first.bits_per_index(0) == weight_row["indices_bits"] / first.kept


def test_table_prints_the_papers_numbers_labelled_as_theirs(dense, tmp_path):
    model = tinynet.models.lenet_300_100()
    table = han_table(model, paper="lenet_300_100", title="LeNet-300-100, dense")
    text, md = str(table), table.to_markdown()
    assert "ip1 (Han et al. 2016)" in text and "8%" in text and "2.50%" in text  # 1 / 40
    assert "Han et al. 2016 (their numbers): 1070 KB -> 27 KB, 40x (32x before Huffman)" in text
    assert md.count("\n| ") == 2 + 3 + 3 + 1 + 1  # head, rule; 3 ours, 3 theirs, header, totals
    assert table.totals()[1] == save_compressed(model, tmp_path / "m.tnc")
    assert len(PAPER["lenet5_caffe"].layers) == 4


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "recipe, message",
    [
        (DeepCompressionRecipe(bits=0), "bits for '1.weight' must be an integer in 1..16, got 0"),
        (DeepCompressionRecipe(bits=17), "must be an integer in 1..16, got 17"),
        (DeepCompressionRecipe(bits=4.0), "must be an integer in 1..16, got 4.0"),
        (DeepCompressionRecipe(bits={"3.weight": True}), "got True"),
        (DeepCompressionRecipe(rounds=(0.5, 1.0)), r"round 1 must lie in \[0, 1\).*got 1.0"),
        (DeepCompressionRecipe(rounds=(-0.1,)), r"must lie in \[0, 1\).*got -0.1"),
        (DeepCompressionRecipe(rounds=("half",)), r"a number in \[0, 1\).*got 'half'"),
        (DeepCompressionRecipe(rounds=()), "at least one sparsity"),
        (DeepCompressionRecipe(rounds=(0.8, 0.5)), "decreases from 0.8 to 0.5"),
        (DeepCompressionRecipe(bits={"2.weight": 4}), r"bits names unknown layers \['2.weight'\]"),
        (
            DeepCompressionRecipe(rounds=({"fc1": 0.5},), scope="layer"),
            r"round 0 names unknown layers \['fc1'\]; expected .* \['1.weight', '3.weight'\]",
        ),
        (DeepCompressionRecipe(rounds=({"1.weight": 0.5},)), "needs scope='layer'"),
        (DeepCompressionRecipe(scope="model"), "scope must be 'global' or 'layer', got 'model'"),
        (DeepCompressionRecipe(prune_epochs=-1), "prune_epochs must be a non-negative integer"),
        (DeepCompressionRecipe(init="kmeans++"), "init must be one of"),
    ],
)
def test_bad_settings_say_what_was_expected_and_what_came(recipe, message, dense):
    with pytest.raises(ValueError, match=message):
        check_recipe(recipe, dense)


def test_bad_settings_fail_before_any_training(dense, data, tmp_path):
    retrain = Retrainer(data)
    with pytest.raises(ValueError, match="1..16"):
        deep_compression(dense, DeepCompressionRecipe(bits=20), retrain, data[1], tmp_path, lr=0.1)
    assert retrain.calls == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="paper must be one of"):
        han_table(dense, paper="alexnet")
