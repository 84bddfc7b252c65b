"""size_report: per-term bookkeeping that adds up, and the two figures other tools quote."""

import csv
import gzip
import io

import numpy as np

import tinynet
from compression.storage import save_compressed, size_report
from compression.storage.report import COLUMNS


def prune(model, sparsity):
    for name, _, _, param in model.named_parameter_slots():
        if name.endswith("weight"):
            w = param.data
            drop = np.argsort(np.abs(w).ravel(), kind="stable")[: round(sparsity * w.size)]
            keep = np.ones(w.size, dtype=bool)
            keep[drop] = False
            param.add_transform(tinynet.Mask(keep.reshape(w.shape)))
    return model


def small_mlp():
    tinynet.manual_seed(0)
    return tinynet.models.mlp((100, 40, 10))


def test_lenet_300_100_dense_terms_and_denominator():
    tinynet.manual_seed(0)
    report = size_report(tinynet.models.lenet_300_100(), reference_files=False)
    assert report.n_params == 266_610
    assert report.dense_float32_bytes == 1_066_440  # Han et al.'s "1070 KB"
    rows = {row["tensor"]: row for row in report.rows}
    assert rows["1.weight"]["values_bits"] == 784 * 300 * 32
    assert rows["1.weight"]["indices_bits"] == 0
    header = rows["header"]["container_bytes"]
    assert report.total_bytes == 1_066_440 + header  # dense: every value + the header
    assert report.by_layer() == {
        "1": 4 * 235_500,
        "3": 4 * 30_100,
        "5": 4 * 1_010,
        "(container)": header,
    }


def test_rows_add_up_to_the_file():
    model = prune(small_mlp(), 0.9)
    report = size_report(model, reference_files=False)
    for row in report.rows:
        assert row["total_bytes"] == sum(row[f"{t}_bytes"] for t in COLUMNS)
        assert row["total_bits"] == sum(row[f"{t}_bits"] for t in COLUMNS)
        assert row["total_bits"] <= 8 * row["total_bytes"] < row["total_bits"] + 8 * 6
    assert sum(row["total_bytes"] for row in report.rows) == report.total_bytes
    assert sum(report.by_term().values()) == report.total_bytes
    assert report.by_term()["indices"] > 0


def test_the_figures_other_tools_quote_are_measured(tmp_path):
    dense, pruned = small_mlp(), prune(small_mlp(), 0.9)
    r_dense, r_pruned = size_report(dense), size_report(pruned)
    # measure the dense .npz ourselves: pruning does not change its size at all
    tinynet.save(dense, tmp_path / "dense.npz")
    npz = (tmp_path / "dense.npz").read_bytes()
    assert r_dense.dense_npz_bytes == r_pruned.dense_npz_bytes == len(npz)
    assert r_dense.dense_npz_gzip_bytes == len(gzip.compress(npz, compresslevel=9, mtime=0))
    assert r_pruned.dense_npz_gzip_bytes < r_dense.dense_npz_gzip_bytes  # zeros compress...
    assert r_pruned.total_bytes < r_pruned.dense_npz_gzip_bytes  # ...but less than we store
    assert save_compressed(pruned, tmp_path / "p.tnc") == r_pruned.total_bytes


def test_text_csv_and_markdown():
    report = size_report(prune(small_mlp(), 0.9))
    text = str(report)
    assert "total (the compressed file)" in text and "gzipped" in text and "tinynet.save" in text
    assert "1.weight" in text and "sparse" in text and "dense, raw float32" in text
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(rows) == len(report.rows) == 5  # 4 tensors + the header
    assert int(rows[-1]["total_bytes"]) == report.rows[-1]["total_bytes"]
    markdown = report.to_markdown()
    assert markdown.count("\n| ") == 5 + 1  # header row + 5 rows
    assert report.to_rows() == report.rows and report.to_rows() is not report.rows
    assert all("reason" in row and row["reason"] for row in report.rows)
