"""compression: techniques that make a tinynet model smaller, and the yardstick that measures it.

Each technique is first a pure function on arrays, then a thin layer that
applies it to a model (see ``DESIGN.md``). Subpackages are imported on
demand, so ``import compression`` stays cheap:

* :mod:`compression.storage` - honest size accounting and the compressed
  file format (``size_report``, ``save_compressed``, ``load_compressed``).
* :mod:`compression.sweep` - accuracy against bytes, one row per setting.
* :mod:`compression.pruning` - masks, schedules, structured pruning, thinning.
* :mod:`compression.quantization` - any bit width, PTQ, QAT, LSQ, weight
  sharing, binary and ternary weights, integer-only inference.
* :mod:`compression.clipping` - weight and activation clipping, PACT, and
  calibration of quantization ranges (percentile, MSE, ACIQ, KL).
* :mod:`compression.distillation` - knowledge distillation (Hinton's loss,
  FitNets hints, students cut from the teacher).
* :mod:`compression.lowrank` - truncated SVD of linear and conv layers.
* :mod:`compression.pipeline` - Deep Compression: prune, share, Huffman-code.
* :mod:`compression.allocation` - spend a byte budget: per-layer sparsity
  and bit width from sensitivity scans.
"""
