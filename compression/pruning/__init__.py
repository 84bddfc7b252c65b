"""compression.pruning: remove weights, neurons and filters, for real.

Read in this order (each file is one lesson):

==============  ==============================================================
``masks``       array math: ``magnitude_mask(w, sparsity)`` (exactly
                ``round(sparsity * w.size)`` dropped), global masks, Han et
                al.'s ``quality * std`` threshold, masks over units
``scores``      importance of neurons and filters: weight norms (L1, L2),
                activations on a calibration batch (mean ``|a|``, fraction of
                zeros), first-order Taylor ``|a * dL/da|``
``apply``       masks on a model as ``tinynet.Mask`` transforms: which
                parameters are eligible, layer-wise or global
``permanent``   after pruning: zero latent values and optimizer state under
                the masks; snapshot and rewind (lottery tickets)
``report``      ``sparsity_report``: nonzero parameters per layer and in total
``structured``  zero whole neurons and filters with masks (the reference)
``thinning``    remove them: a new, smaller dense model whose outputs equal
                the masked model's
``schedules``   Zhu and Gupta's cubic schedule, as a training callback
``procedures``  one-shot, iterative (Han et al.), lottery tickets, L1 penalty
``sensitivity`` each layer pruned alone: which layers can lose most
``curves``      density curves from 100% to 1%: one-shot, iterative, gradual
==============  ==============================================================

>>> import numpy as np
>>> from compression.pruning import magnitude_mask
>>> magnitude_mask(np.array([0.3, -0.1, 0.2, -0.4]), 0.5)
array([ True, False, False,  True])

PyTorch counterparts: ``torch.nn.utils.prune.l1_unstructured``,
``ln_structured``, ``global_unstructured``, ``remove``; thinning has none
(Distiller's "thinning").
"""

from compression.pruning.apply import (
    PruningRow,
    PruningSummary,
    add_mask,
    current_keep,
    effective_value,
    eligible_parameters,
    prunable_layers,
    prune_model,
)
from compression.pruning.curves import (
    DENSITIES,
    METHODS,
    DensityPoint,
    density_curve,
    density_table_markdown,
    gradual_schedule,
    plot_density_curve,
)
from compression.pruning.masks import (
    check_sparsity,
    expand_unit_mask,
    global_magnitude_masks,
    magnitude_mask,
    magnitude_threshold,
    num_to_drop,
    smallest_mask,
    std_threshold_mask,
    unit_mask,
)
from compression.pruning.permanent import make_permanent, rewind, snapshot
from compression.pruning.procedures import (
    L1Penalty,
    PruningRound,
    iterative_prune,
    lottery_ticket,
    one_shot,
    retrain,
)
from compression.pruning.report import SparsityReport, sparsity_report
from compression.pruning.schedules import GradualPruning, agp_sparsity, lottery_sparsity
from compression.pruning.scores import (
    ActivationStats,
    activation_stats,
    ln_structured_mask,
    taylor_scores,
    unit_norms,
)
from compression.pruning.sensitivity import SensitivityRow, plot_sensitivity, sensitivity_scan
from compression.pruning.structured import mask_units, prune_units, removed_units
from compression.pruning.thinning import count_parameters, register_slicer, thin, thinning_report

__all__ = [
    "ActivationStats",
    "PruningRow",
    "PruningSummary",
    "SparsityReport",
    "activation_stats",
    "add_mask",
    "check_sparsity",
    "count_parameters",
    "current_keep",
    "effective_value",
    "eligible_parameters",
    "expand_unit_mask",
    "global_magnitude_masks",
    "ln_structured_mask",
    "magnitude_mask",
    "magnitude_threshold",
    "make_permanent",
    "mask_units",
    "num_to_drop",
    "prunable_layers",
    "prune_model",
    "prune_units",
    "register_slicer",
    "removed_units",
    "rewind",
    "smallest_mask",
    "snapshot",
    "sparsity_report",
    "std_threshold_mask",
    "taylor_scores",
    "thin",
    "thinning_report",
    "unit_mask",
    "unit_norms",
    # schedules, procedures, sensitivity, density curves
    "DENSITIES",
    "METHODS",
    "DensityPoint",
    "density_curve",
    "density_table_markdown",
    "gradual_schedule",
    "plot_density_curve",
    "GradualPruning",
    "L1Penalty",
    "PruningRound",
    "SensitivityRow",
    "agp_sparsity",
    "iterative_prune",
    "lottery_sparsity",
    "lottery_ticket",
    "one_shot",
    "plot_sensitivity",
    "retrain",
    "sensitivity_scan",
]
