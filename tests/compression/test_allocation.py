"""Byte-budget allocation: the knapsack's known optimum, bytes that match the real file, errors."""

import copy
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from compression.allocation import (
    Allocation,
    LayerOption,
    SensitivityTable,
    allocate,
    apply_choice,
    best_fitting,
    check_budget,
    compress_to_budget,
    greedy_choice,
    knapsack_choice,
    measure_table,
    option_grid,
    smallest_cost,
    trim_to_budget,
    uniform_allocation,
    uniform_candidates,
)
from compression.pruning import current_keep
from compression.quantization import bit_widths
from compression.storage import load_compressed, save_compressed, size_report
from tinynet.models import mlp


def brute_force(costs, drops, capacity):
    """The least summed damage over every choice that fits (and its choices)."""
    best = None
    for idx in itertools.product(*[range(costs.shape[1])] * costs.shape[0]):
        cost = sum(costs[l, o] for l, o in enumerate(idx))
        drop = sum(drops[l, o] for l, o in enumerate(idx))
        if cost <= capacity and (best is None or drop < best - 1e-12):
            best = drop
    return best


# ----------------------------------------------------------------- the solvers
def test_knapsack_finds_the_hand_worked_optimum():
    # Three layers, three options each: (bytes, damage).
    costs = np.array([[100, 60, 20], [50, 30, 10], [40, 25, 5]])
    drops = np.array([[0.0, 0.1, 2.0], [0.0, 0.5, 1.0], [0.0, 0.2, 0.3]])
    # Capacity 105, worked by hand. Layer 0 at 100 leaves 5, too few for the others (10 + 5).
    # Layer 0 at 60 (0.1) leaves 45: 30 + 5 (0.5 + 0.3), 10 + 25 (1.2), 10 + 5 (1.3); 30 + 25
    # and 10 + 40 do not fit. Layer 0 at 20 (2.0) costs more than all of those already.
    # The optimum is [1, 1, 2]: 60 + 30 + 5 = 95 bytes, damage 0.1 + 0.5 + 0.3 = 0.9.
    assert knapsack_choice(costs, drops, 105) == [1, 1, 2]
    assert brute_force(costs, drops, 105) == pytest.approx(0.9)
    # With room for everything, nothing is compressed; at the minimum, everything is.
    assert knapsack_choice(costs, drops, 190) == [0, 0, 0]
    assert knapsack_choice(costs, drops, 35) == [2, 2, 2]


def test_greedy_is_beaten_by_the_knapsack_on_a_known_table():
    # Layer 0's move saves 6 bytes for 2.0 (rate 3), layer 1's 1 byte for 0.5 (rate 2):
    # greedy takes layer 0's and pays 2.0; one byte over, layer 1's move was enough (0.5).
    costs = np.array([[10, 4], [10, 9]])
    drops = np.array([[0.0, 2.0], [0.0, 0.5]])
    assert greedy_choice(costs, drops, 19) == [1, 0]
    assert knapsack_choice(costs, drops, 19) == [0, 1]


def test_greedy_takes_free_moves_first_and_fits():
    costs = np.array([[10, 6, 2], [8, 3, 1]])
    drops = np.array([[0.0, 0.0, 4.0], [0.0, 1.0, 3.0]])
    idx = greedy_choice(costs, drops, 10)
    assert idx == [1, 1]  # free 10 -> 6, then 8 -> 3 (rate 5) beats 6 -> 2 (rate 1)
    assert sum(costs[l, o] for l, o in enumerate(idx)) <= 10


@settings(deadline=None, max_examples=40)
@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(0, 2**31 - 1),
    st.floats(0.0, 1.0),
)
def test_knapsack_equals_brute_force(n_layers, n_options, seed, slack):
    rng = np.random.default_rng(seed)
    costs = rng.integers(1, 30, size=(n_layers, n_options))
    drops = rng.normal(size=(n_layers, n_options)).round(3)
    low, high = smallest_cost(costs), int(costs.max(axis=1).sum())
    capacity = low + int(slack * (high - low))
    idx = knapsack_choice(costs, drops, capacity)
    assert sum(costs[l, o] for l, o in enumerate(idx)) <= capacity
    got = sum(drops[l, o] for l, o in enumerate(idx))
    assert got == pytest.approx(brute_force(costs, drops, capacity))
    # Costs rounded up to a coarser resolution: still fits, damage no better than exact.
    roomy = capacity + 4 * n_layers  # room for the rounding up of every layer's cost
    coarse = knapsack_choice(costs, drops, roomy, resolution=4)
    assert sum(costs[l, o] for l, o in enumerate(coarse)) <= roomy
    assert sum(drops[l, o] for l, o in enumerate(coarse)) >= brute_force(costs, drops, roomy) - 1e-9


def test_solver_errors_name_the_smallest_achievable():
    costs, drops = np.array([[10, 4], [10, 9]]), np.zeros((2, 2))
    with pytest.raises(ValueError, match="smallest achievable 13 bytes"):
        knapsack_choice(costs, drops, 12)
    with pytest.raises(ValueError, match="smallest achievable 13 bytes"):
        greedy_choice(costs, drops, 12)
    with pytest.raises(ValueError, match="do not match"):
        knapsack_choice(costs, np.zeros((2, 3)), 20)
    with pytest.raises(ValueError, match="finite"):
        knapsack_choice(costs, np.array([[0.0, np.nan], [0.0, 0.0]]), 20)
    with pytest.raises(ValueError, match="resolution"):
        knapsack_choice(costs, drops, 20, resolution=0)


# ------------------------------------------------------------- options, inputs
def test_option_grid_and_bad_options():
    grid = option_grid([0.0, 0.9], [8, 2])
    assert grid == [
        LayerOption(0.0, 8),
        LayerOption(0.0, 2),
        LayerOption(0.9, 8),
        LayerOption(0.9, 2),
    ]
    with pytest.raises(ValueError, match=r"sparsity must lie in \[0, 1\)"):
        LayerOption(1.0, 4)
    with pytest.raises(ValueError, match=r"sparsity must lie in \[0, 1\)"):
        option_grid([-0.1], [4])
    with pytest.raises(ValueError, match="sparsity must be a number"):
        LayerOption("0.5", 4)
    with pytest.raises(ValueError, match=r"bits must be an integer in 2\.\.16, got 1"):
        LayerOption(0.5, 1)
    with pytest.raises(ValueError, match=r"bits must be an integer in 2\.\.16, got 17"):
        option_grid([0.5], [17])
    with pytest.raises(ValueError, match="bits must be an integer"):
        LayerOption(0.5, 4.0)
    with pytest.raises(ValueError, match="repeat"):
        option_grid([0.5, 0.5], [4])
    with pytest.raises(ValueError, match="empty"):
        option_grid([], [4])


@pytest.mark.parametrize("budget", [0, -5, 0.0, float("nan"), "100", True])
def test_non_positive_or_malformed_budget_raises(budget):
    with pytest.raises(ValueError, match="budget must be a positive number of bytes"):
        check_budget(budget)


def test_apply_choice_prunes_then_quantizes_each_layer():
    tinynet.manual_seed(0)
    model = mlp((12, 10, 4))
    apply_choice(model, {"1.weight": LayerOption(0.5, 4), "3.weight": LayerOption(0.0, 8)})
    assert bit_widths(model) == {"1.weight": 4, "3.weight": 8}
    assert (~current_keep(model[1].weight)).sum() == 60  # round(0.5 * 120)
    assert current_keep(model[3].weight).all()
    assert np.unique(model[1].weight.value()[0]).size <= 16  # 4-bit codes per channel
    with pytest.raises(ValueError, match="not weights of the model"):
        apply_choice(mlp((12, 10, 4)), {"2.weight": LayerOption(0.5, 4)})


# -------------------------------------------------------------- on a real model
@pytest.fixture(scope="module")
def small():
    """A trained 16-12-3 MLP on separable blobs, its calibration data and a scanned table."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    centres = rng.normal(scale=2.0, size=(3, 16))
    x = (centres[y] + rng.normal(size=(300, 16))).astype(np.float32)
    tinynet.manual_seed(0)
    model = mlp((16, 12, 3))
    opt = tinynet.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tinynet.fit(model, (x[:200], y[:200]), tinynet.CrossEntropyLoss(), opt, 5, progress=False)
    grid = option_grid([0.0, 0.5, 0.9], [8, 4, 2])
    table = measure_table(model, (x[200:], y[200:]), grid)
    return model, (x[200:], y[200:]), table


def test_table_shapes_and_model_untouched(small):
    model, calibration, table = small
    assert table.names == ["1.weight", "3.weight"]
    assert table.layer_bytes.shape == table.loss_increase.shape == (2, 9)
    assert table.n_params == 16 * 12 + 12 + 12 * 3 + 3
    assert all(not p.transforms for p in model.parameters())  # the scan works on copies
    b = table.layer_bytes[0].reshape(3, 3)  # rows: sparsity 0, .5, .9; columns: 8, 4, 2 bits
    assert b[0, 0] > b[0, 1] > b[0, 2] and b[0, 0] > b[2, 2]
    # Measured, not a formula: on a layer of 192 weights, pruning half of them *adds* bytes
    # (the mask's positions and its JSON description outweigh 96 codes).
    assert b[1, 0] > b[0, 0]
    assert SensitivityTable.from_dict(table.to_dict()).to_dict() == table.to_dict()


def test_estimated_bytes_match_the_real_file(small, tmp_path):
    model, _, table = small
    for i, (a, b) in enumerate(itertools.product(table.options, table.options)):
        choice = {"1.weight": a, "3.weight": b}
        net = apply_choice(copy.deepcopy(model), choice)
        report = size_report(net, reference_files=False)
        # Payload bytes of each weight are exactly those measured in the scan...
        for name, option in choice.items():
            payload = next(r for r in report.rows if r["tensor"] == name)["total_bytes"]
            measured = table.layer_bytes[table.names.index(name), table.options.index(option)]
            assert 0 < payload < measured  # measured = payload + its share of the JSON header
        # ...and the whole file differs from the estimate only by the decimal digits of
        # offsets, payload length and CRC-32 in the header (a few bytes, the estimate above).
        estimate = table.estimate_bytes(choice)
        assert -2 <= estimate - report.total_bytes <= 40
        if i % 20 == 0:
            assert save_compressed(net, tmp_path / "m.tnc") == report.total_bytes


def test_allocation_fits_and_beats_or_equals_uniform_estimate(small):
    model, calibration, table = small
    budget = (
        table.smallest_bytes() + table.estimate_bytes(dict.fromkeys(table.names, table.options[0]))
    ) // 2
    alloc = allocate(table, budget)
    assert alloc.estimated_bytes <= budget
    every = [dict(zip(table.names, pair)) for pair in itertools.product(table.options, repeat=2)]
    fitting = [c for c in every if table.estimate_bytes(c) <= budget]
    assert alloc.estimated_drop == pytest.approx(min(table.estimate_drop(c) for c in fitting))
    greedy = allocate(table, budget, method="greedy")
    assert (
        greedy.estimated_bytes <= budget and greedy.estimated_drop >= alloc.estimated_drop - 1e-12
    )
    uniform = uniform_allocation(model, table, calibration, budget)
    assert len({*uniform.choice.values()}) == 1 and uniform.estimated_bytes <= budget
    assert best_fitting(uniform_candidates(model, table, calibration, budget), budget) == uniform


def test_budget_below_the_smallest_file_says_how_small(small):
    model, calibration, table = small
    smallest = table.smallest_bytes()
    with pytest.raises(ValueError, match=f"smallest achievable file of {smallest:,} bytes"):
        allocate(table, smallest - 1)
    assert allocate(table, smallest).estimated_bytes == smallest
    with pytest.raises(ValueError, match="budget must be a positive"):
        allocate(table, 0)
    with pytest.raises(ValueError, match="metric"):
        allocate(table, smallest, metric="top5")
    with pytest.raises(ValueError, match="method"):
        allocate(table, smallest, method="annealing")


def test_compress_to_budget_fine_tunes_and_checks_the_file(small, tmp_path):
    model, (x, y), table = small
    budget = table.smallest_bytes() + 150
    calls = []

    def fine_tune(net):
        calls.append(1)
        opt = tinynet.SGD(net.parameters(), lr=0.01)
        tinynet.fit(net, (x, y), tinynet.CrossEntropyLoss(), opt, 1, progress=False)

    def accuracy(net):
        return tinynet.evaluate(net, x, y)["accuracy"]

    result = compress_to_budget(
        model, table, budget, lambda b: allocate(table, b), fine_tune, accuracy
    )
    assert calls == [1] and result.fits and result.real_bytes <= budget
    assert result.real_bytes == save_compressed(result.model, tmp_path / "r.tnc")
    loaded = load_compressed(tmp_path / "r.tnc")
    np.testing.assert_array_equal(tinynet.predict(loaded, x), tinynet.predict(result.model, x))
    for name, option in result.allocation.choice.items():  # masks and quantizers survived
        param = {n: p for n, _, _, p in result.model.named_parameter_slots()}[name]
        assert (~current_keep(param)).sum() == round(option.sparsity * param.size)
    assert bit_widths(result.model) == {n: o.bits for n, o in result.allocation.choice.items()}
    row = result.to_dict()
    assert row["budget"] == budget and set(row["choice"]) == set(table.names)
    assert all(not p.transforms for p in model.parameters())  # the input model is untouched


def test_compress_to_budget_tightens_when_the_file_is_over(small):
    model, _, table = small
    uniform = [dict.fromkeys(table.names, o) for o in table.options]
    largest = max(uniform, key=table.estimate_bytes)
    most, least = table.estimate_bytes(largest), table.smallest_bytes()
    budget = least + 3 * (most - least) // 4
    targets = []

    def choose(target):
        targets.append(target)
        if len(targets) == 1:  # a first answer that ignores the budget: the file is over
            return Allocation("test", "loss", largest, table.estimate_bytes(largest), 0.0)
        return allocate(table, target)

    result = compress_to_budget(model, table, budget, choose, lambda net: None, lambda net: 0.0)
    assert targets[0] == budget and targets[1] < budget - (most - least) // 8
    assert result.fits and result.real_bytes <= budget
    assert "over; target lowered" in result.notes[0] and len(result.notes) == 1


def test_a_file_that_grows_in_fine_tuning_is_tightened_to_the_next_setting():
    # Gaussian weights give peaked 3-bit codes that Huffman shortens; the "fine-tuning"
    # below spreads them uniformly, so the same setting's file grows past the budget.
    rng = np.random.default_rng(0)
    model = mlp((64, 64, 3))
    for _, _, _, p in model.named_parameter_slots():
        p.data[...] = rng.normal(scale=0.1, size=p.shape).astype(np.float32)
    x, y = rng.normal(size=(50, 64)).astype(np.float32), rng.integers(0, 3, 50)
    table = measure_table(model, (x, y), option_grid([0.0], [3, 2]))
    three, two = (dict.fromkeys(table.names, o) for o in table.options)
    candidates = [
        Allocation("uniform", "loss", c, table.estimate_bytes(c), 0.0) for c in (three, two)
    ]

    def spread(net):
        for _, _, _, p in net.named_parameter_slots():
            if p.transforms:
                top = np.abs(p.data).max()
                p.data[...] = rng.uniform(-top, top, size=p.shape).astype(np.float32)

    budget = candidates[0].estimated_bytes
    result = compress_to_budget(
        model, table, budget, lambda t: best_fitting(candidates, t), spread, lambda n: 0.0
    )
    assert "after fine-tuning" in result.notes[0] and len(result.notes) == 1
    assert result.allocation.choice == two and result.fits and result.real_bytes <= budget
    # With no smaller setting to fall back on, the fine-tuned model is trimmed to fit,
    # and the accuracy reported is the trimmed model's.
    seen = []

    def evaluate_fn(net):
        seen.append(sum(int((np.asarray(net[i].weight.value()) == 0).sum()) for i in (1, 3)))
        return 0.5

    trimmed = compress_to_budget(
        model, table, budget, lambda t: best_fitting(candidates[:1], t), spread, evaluate_fn
    )
    assert "nothing fits" in trimmed.notes[-2] and trimmed.notes[-1].startswith("trimmed:")
    assert trimmed.fits and trimmed.real_bytes <= budget and trimmed.trimmed > 0
    assert trimmed.real_bytes == _file_bytes(trimmed.model)
    assert seen[-1] >= trimmed.trimmed  # evaluated after the extra zeros were made


def _file_bytes(net) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tnc"
        save_compressed(net, path)
        return path.stat().st_size


def test_trim_to_budget_prunes_the_largest_layer_until_the_file_fits():
    rng = np.random.default_rng(1)
    model = mlp((64, 32, 3))
    for _, _, _, p in model.named_parameter_slots():
        p.data[...] = rng.normal(scale=0.1, size=p.shape).astype(np.float32)
    apply_choice(model, {"1.weight": LayerOption(0.5, 4), "3.weight": LayerOption(0.0, 4)})
    before = _file_bytes(model)
    w0 = np.asarray(model[1].weight.value())
    smallest_kept = np.abs(w0[w0 != 0]).min()
    w3_zeros = int((np.asarray(model[3].weight.value()) == 0).sum())
    n = trim_to_budget(model, before - 100, ["1.weight", "3.weight"])
    after = _file_bytes(model)
    assert 0 < n and after <= before - 100
    w0, w3 = np.asarray(model[1].weight.value()), np.asarray(model[3].weight.value())
    assert int((w0 == 0).sum()) == 1024 + n  # all from the largest layer (2,048 entries)
    assert int((w3 == 0).sum()) == w3_zeros
    assert smallest_kept <= np.abs(w0[w0 != 0]).min()  # the smallest went first
    # A file within its budget is untouched; an impossible budget prunes everything named.
    assert trim_to_budget(model, after, ["1.weight"]) == 0
    rest = int((w0 != 0).sum())
    assert trim_to_budget(model, 1, ["1.weight"]) == rest
    assert not np.asarray(model[1].weight.value()).any()
