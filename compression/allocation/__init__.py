"""compression.allocation: spend a byte budget where it matters, layer by layer.

Given a budget in bytes of the compressed file, choose each ``Conv2d`` and
``Linear`` weight's sparsity and bit width from sensitivity scans, apply
the choice, fine-tune, and check the real file against the budget.

Read in this order (each file is one lesson):

============  ================================================================
``options``   the grid of (sparsity, bits) per layer; applying a choice to a
              model (``Mask`` then frozen ``FakeQuantize``, Deep Compression's
              order)
``table``     the scan: each layer alone at each option, its bytes in the real
              file and the damage on a calibration set; the additivity
              assumption and where it fails
``knapsack``  choosing: exact multiple-choice knapsack by dynamic programming
              over bytes, and the bytes-per-damage greedy it beats
``budget``    ``allocate`` (per layer, under the budget) and the uniform
              baseline at the same budget
``compress``  ``compress_to_budget``: apply, fine-tune, check the real file,
              tighten
============  ================================================================

>>> import numpy as np
>>> from compression.allocation import knapsack_choice
>>> costs = np.array([[10, 4], [10, 9]])            # bytes of each layer's two options
>>> drops = np.array([[0.0, 2.0], [0.0, 0.5]])      # damage of each option
>>> knapsack_choice(costs, drops, capacity=19)      # layer 1 cheaper: 19 bytes, damage 0.5
[0, 1]

References: Han et al. 2015 ("Learning both Weights and Connections",
per-layer sensitivity scans), Han et al. 2016 ("Deep Compression",
per-layer pruning rates and bit widths), Wang et al. 2019 ("HAQ",
per-layer bit widths under a resource budget).
"""

from compression.allocation.budget import (
    Allocation,
    allocate,
    best_fitting,
    check_budget,
    uniform_allocation,
    uniform_candidates,
)
from compression.allocation.compress import (
    BudgetResult,
    choice_from_dict,
    compress_to_budget,
    trim_to_budget,
)
from compression.allocation.knapsack import greedy_choice, knapsack_choice, smallest_cost
from compression.allocation.options import (
    BITS,
    SPARSITIES,
    LayerOption,
    apply_choice,
    check_option_bits,
    check_option_sparsity,
    option_grid,
)
from compression.allocation.table import METRICS, SensitivityTable, measure_table, tensor_share

__all__ = [
    "BITS",
    "METRICS",
    "SPARSITIES",
    "Allocation",
    "BudgetResult",
    "LayerOption",
    "SensitivityTable",
    "allocate",
    "apply_choice",
    "best_fitting",
    "check_budget",
    "check_option_bits",
    "check_option_sparsity",
    "choice_from_dict",
    "compress_to_budget",
    "trim_to_budget",
    "greedy_choice",
    "knapsack_choice",
    "measure_table",
    "option_grid",
    "smallest_cost",
    "tensor_share",
    "uniform_allocation",
    "uniform_candidates",
]
