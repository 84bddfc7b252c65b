"""compression.pipeline: Deep Compression end to end (Han, Mao, Dally 2016).

Prune -> share weights -> Huffman-code, every stage measured on the real
file it writes. Read in this order (each file is one lesson):

=====================  ===============================================================
``recipe``             the settings of the three stages (pruning schedule, bits per
                       layer, epochs), checked before any training
``stages``             each stage as a function on a model (``prune_round``,
                       ``share_stage``, ``fine_tune_shared``) and ``StageResult``,
                       the record of one stage's file (bytes, ratio, accuracy of the
                       model loaded back from it)
``deep_compression``   the driver: all stages, cached so a rerun resumes
``tables``             Han et al.'s per-layer Tables 2/3 for our file, the paper's
                       numbers beside ours; the rows add up to the file's length
=====================  ===============================================================

>>> import numpy as np, tinynet
>>> from compression.pipeline import DeepCompressionRecipe, deep_compression, han_table
>>> def retrain(model, epochs, params, seed):   # your training loop
...     pass
>>> result = deep_compression(                  # doctest: +SKIP
...     dense, DeepCompressionRecipe(rounds=(0.5, 0.8, 0.92), bits=6), retrain,
...     (x_heldout, y_heldout), "out/", lr=0.01)
>>> print(result)                               # doctest: +SKIP
>>> print(han_table(result.model, paper="lenet_300_100"))   # doctest: +SKIP
"""

from compression.pipeline.deep_compression import DeepCompressionResult, deep_compression
from compression.pipeline.recipe import (
    DeepCompressionRecipe,
    check_bits,
    check_recipe,
    check_rounds,
    layer_names,
)
from compression.pipeline.stages import (
    Retrain,
    StageResult,
    centroid_counts,
    fine_tune_shared,
    kept_fraction,
    measure_stage,
    prune_round,
    share_stage,
    sharing_groups,
)
from compression.pipeline.tables import (
    PAPER,
    DeepCompressionTable,
    LayerRow,
    PaperLayer,
    PaperNumbers,
    han_table,
)

__all__ = [
    "PAPER",
    "DeepCompressionRecipe",
    "DeepCompressionResult",
    "DeepCompressionTable",
    "LayerRow",
    "PaperLayer",
    "PaperNumbers",
    "Retrain",
    "StageResult",
    "centroid_counts",
    "check_bits",
    "check_recipe",
    "check_rounds",
    "deep_compression",
    "fine_tune_shared",
    "han_table",
    "kept_fraction",
    "layer_names",
    "measure_stage",
    "prune_round",
    "share_stage",
    "sharing_groups",
]
