"""compression.lowrank: truncated SVD of weight matrices, layers factorised into thin pairs.

Read in this order (each file is one lesson):

=============  ===============================================================
``svd``        array math: the truncated SVD, Eckart-Young's error
               ``sqrt(sum of dropped s^2)``, the balanced factors
               ``A = U_r sqrt(S_r)``, ``B = sqrt(S_r) V_r^T``, the rank that
               keeps a fraction of the energy, when a rank saves parameters
``factorize``  on a model: ``Linear(in, out)`` -> ``Linear(in, r, bias=False)``
               then ``Linear(r, out)``; ``Conv2d`` -> a rank-``r`` spatial
               conv then a 1x1 conv; ranks by name or by energy; a new model
``technique``  the sweep's ``low rank`` entry: factorise by energy kept, then
               fine-tune
=============  ===============================================================

>>> import numpy as np
>>> from compression.lowrank import singular_values, truncation_error
>>> s = singular_values(np.array([[3.0, 0.0], [0.0, 4.0]]))
>>> s
array([4., 3.])
>>> truncation_error(s, 1)   # ||W - W_1||_F: the dropped singular value
3.0

PyTorch counterparts: ``torch.linalg.svd(W, full_matrices=False)`` and
``torch.linalg.svdvals``; the factored layers are plain ``nn.Sequential(
nn.Linear(in, r, bias=False), nn.Linear(r, out))``. Papers: Xue, Li and
Gong 2013 (speech DNNs); Denton et al. 2014; Jaderberg, Vedaldi and
Zisserman 2014 (convolutions).
"""

from compression.lowrank.factorize import (
    LayerRank,
    choose_ranks,
    count_parameters,
    factorizable_layers,
    factorize_conv2d,
    factorize_layer,
    factorize_linear,
    low_rank,
    lowrank_report,
    rank_table,
)
from compression.lowrank.svd import (
    check_energy,
    check_rank,
    energy_kept,
    factorized_parameters,
    low_rank_approximation,
    low_rank_factors,
    max_useful_rank,
    rank_for_energy,
    saves_parameters,
    singular_values,
    truncated_svd,
    truncation_error,
    weight_matrix,
)

__all__ = [
    "LayerRank",
    "check_energy",
    "check_rank",
    "choose_ranks",
    "count_parameters",
    "energy_kept",
    "factorizable_layers",
    "factorized_parameters",
    "factorize_conv2d",
    "factorize_layer",
    "factorize_linear",
    "low_rank",
    "low_rank_approximation",
    "low_rank_factors",
    "lowrank_report",
    "max_useful_rank",
    "rank_for_energy",
    "rank_table",
    "saves_parameters",
    "singular_values",
    "truncated_svd",
    "truncation_error",
    "weight_matrix",
]
