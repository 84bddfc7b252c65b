"""compression: techniques that make a tinynet model smaller, and the yardstick that measures it.

Each technique is first a pure function on arrays, then a thin layer that
applies it to a model (see ``DESIGN.md``). Subpackages are imported on
demand, so ``import compression`` stays cheap:

* :mod:`compression.storage` - honest size accounting and the compressed
  file format (``size_report``, ``save_compressed``, ``load_compressed``).
"""
