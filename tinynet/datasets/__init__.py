"""Data files shipped inside the package (read with ``importlib.resources``).

- ``mnist_mini.npz``: the embedded MNIST subset of :func:`tinynet.data.load_mnist_mini`;
  CC BY-SA 3.0, see ``README.md`` in this folder.
"""
