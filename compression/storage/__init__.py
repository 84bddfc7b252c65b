"""compression.storage: honest model size, and a compressed file that has exactly that size.

Read in this order (each file is one lesson):

=================  ==========================================================
``bitpack``        n-bit integers packed back to back: ``count * n`` bits
``sparse``         positions of kept weights: bitmask, CSR, relative indices
``codebook``       weight sharing: ``n * log2(k) + k * 32`` bits
``huffman``        canonical Huffman codes built with ``heapq``
``streams``        segments (bits charged to a report term), integer and
                   value streams
``encoded``        ``EncodedTensor`` and the codec registry
``dense``,         the codecs: whole tensors to segments and back
``sparse_codec``,
``quantized``
``tensor``         the per-parameter chooser (cheapest *exact* encoding) and
                   the registry later transforms use to say how they are stored
``architecture``   the model as JSON, from whitelisted layer types
``container``      the file format: ``save_compressed`` / ``load_compressed``
``report``         ``size_report``: every term, beside the figures others quote
=================  ==========================================================

>>> import tinynet
>>> from compression.storage import save_compressed, size_report
>>> model = tinynet.models.lenet_300_100()
>>> report = size_report(model)        # print(report) shows the table
>>> save_compressed(model, "lenet.tnc") == report.total_bytes  # doctest: +SKIP
True
"""

from compression.storage.container import (
    CompressedFileError,
    load_compressed,
    plan_container,
    save_compressed,
)
from compression.storage.report import SizeReport, size_report
from compression.storage.tensor import encode_parameter, register_storage_handler

__all__ = [
    "CompressedFileError",
    "SizeReport",
    "encode_parameter",
    "load_compressed",
    "plan_container",
    "register_storage_handler",
    "save_compressed",
    "size_report",
]
