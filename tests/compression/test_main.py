"""``python -m compression``: the main job end to end on a tiny budget, its caches, resuming."""

import csv
import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest

from compression.__main__ import baseline_key, baseline_paths, cached_baseline, main, parse_args
from compression.report import FILES, PIPELINE_FILE

FAST = ["--fast", "--epochs", "1", "--quiet"]


def test_main_job_writes_every_report_file_then_reuses_its_caches_and_resumes(tmp_path, capsys):
    out = tmp_path / "report"
    assert main([*FAST, "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "baseline: training lenet_300_100 for 1 epochs" in first
    assert "verified: every file" in first
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(out / "rows.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    quantizers = [q for q in ("PTQ", "QAT", "LSQ", "k-means sharing") for _ in (8, 4, 2)]
    assert [r["technique"] for r in rows] == ["dense", "width", "width", "pruning", "pruning"] + (
        quantizers
        + ["PTQ + clipping"] * 3
        + ["distillation", "distillation"]
        + ["low rank"] * 2
        + ["Deep Compression"]
    )
    by_point = {(r["technique"], r["setting"]): r for r in rows}
    assert by_point["k-means sharing", "2-bit"]["bit_widths"] == "1.weight=2 3.weight=2 5.weight=2"
    assert (
        by_point["LSQ", "2-bit"]["bit_widths"]
        == "1.weight=2 2.output=2 3.weight=2 4.output=2 5.weight=2 5.output=8"
    )
    deep = by_point["Deep Compression", "90% pruned, 5-bit"]
    assert deep["bit_widths"] == "1.weight=5 3.weight=5 5.weight=5"
    assert float(deep["kept"]) == pytest.approx(0.1, abs=1e-3)
    assert deep["stages"].startswith("pruned ") and " -> Huffman " in deep["stages"]
    for r in rows:  # every point's file is kept, and its length is the row's bytes
        assert os.path.getsize(out / "models" / r["artifact"]) == int(r["bytes"])
    assert sorted(os.listdir(out / "models")) == sorted(r["artifact"] for r in rows)

    readme = (out / "README.md").read_text()
    assert "python -m compression --fast --epochs 1 --quiet --out" in readme
    assert "fast mode" in readme and "load average" in readme and "mnist-mini" in readme
    assert "trained in this run" in readme
    reports = (out / "size_reports.md").read_text()
    assert reports.count("## ") == 11 and "total (the compressed file)" in reports
    assert "| technique | setting | bytes |" in (out / "rows.md").read_text()
    assert "No published points" in readme and "Han et al. 2016 (paper)" not in readme
    assert "## Deep Compression, stage by stage" in readme and "| 1 (Linear) | 235,200 |" in readme
    pipeline = (out / PIPELINE_FILE).read_text()  # Han et al.'s table of the file, not the paper's
    assert f"{int(deep['bytes']):,} B after" in pipeline and "(Han et al. 2016)" not in pipeline

    npz = next(out.glob("baseline_lenet_300_100_mini_seed0_epochs1_train2000.npz"))
    sidecar = npz.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    assert info["key"]["epochs"] == 1 and info["key"]["model"] == "lenet_300_100"
    npz_stamp, sidecar_text = npz.stat().st_mtime_ns, sidecar.read_text()

    (out / "models" / "stale.tnc").write_bytes(b"from an older run")
    assert main([*FAST, "--out", str(out)]) == 0  # second run: the cached baseline
    second = capsys.readouterr().out
    assert "reusing cached" in second and "not retrained" in second
    assert "baseline: training" not in second
    assert f"cache: {len(rows)} of {len(rows)} points found" in second  # nothing recomputed
    assert "density curve: reusing" in second
    assert npz.stat().st_mtime_ns == npz_stamp and sidecar.read_text() == sidecar_text
    assert not (out / "models" / "stale.tnc").exists()  # models/ holds this run's files only
    assert "reused from the cache (not retrained)" in (out / "README.md").read_text()
    with open(out / "rows.csv", newline="") as f:
        again = list(csv.DictReader(f))
    assert again == rows  # cached rows, times included

    # A run killed between a point's two writes: its file is there, its JSON (written
    # last) is not. Another point's JSON is garbage; a third one's holds a pickle.
    points = out / "cache" / "points"
    killed = next(points.glob("PTQ_8-bit_*.json"))
    garbled = next(points.glob("dense_*.json"))
    pickled = next(points.glob("PTQ_4-bit_*.json"))
    untouched = {p: p.stat().st_mtime_ns for p in points.iterdir()}
    killed.unlink()
    garbled.write_text('{"format": "tinynet-sweep-point", "version": 1, "key": {"trunc')
    trap = tmp_path / "unpickled"
    pickled.write_bytes(pickle.dumps(Trap(trap)))
    for path in (killed, garbled, pickled):  # these three points are redone, files and all
        untouched.pop(path), untouched.pop(path.with_suffix(".tnc"))
    assert main([*FAST, "--out", str(out)]) == 0
    third = capsys.readouterr().out
    assert f"cache: {len(rows) - 3} of {len(rows)} points found" in third
    assert f"{garbled} refused (" in third and f"{pickled} refused (" in third
    assert "recomputing dense baseline, float32" in third
    assert not trap.exists()  # never unpickled
    assert killed.is_file() and json.loads(pickled.read_text())["row"]["setting"] == "4-bit"
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # the rest: not redone
    with open(out / "rows.csv", newline="") as f:
        third_rows = list(csv.DictReader(f))
    drop_time = [{k: v for k, v in r.items() if k != "time_ms"} for r in rows]
    assert [{k: v for k, v in r.items() if k != "time_ms"} for r in third_rows] == drop_time
    assert not list(points.glob("*.tmp")) and not list(points.glob(".*"))


class Trap:
    """Unpickling this creates a file: the cache must never do it."""

    def __init__(self, path):
        self.path = Path(path)

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_cached_baseline_must_match_its_sidecar(tmp_path):
    args = parse_args([*FAST, "--out", str(tmp_path)])
    key = baseline_key(args, 2000)
    npz, sidecar = baseline_paths(tmp_path, key)
    assert cached_baseline(npz, sidecar, key) is None  # nothing cached yet
    npz.write_bytes(b"weights")
    sidecar.write_text(json.dumps({"key": key, "sha256": "0" * 64}))
    assert cached_baseline(npz, sidecar, key) is None  # the checksum does not match
    sidecar.write_text(json.dumps({"key": key, "sha256": hashlib.sha256(b"weights").hexdigest()}))
    assert cached_baseline(npz, sidecar, key) is not None
    assert cached_baseline(npz, sidecar, {**key, "seed": 1}) is None  # other arguments
    sidecar.write_text("{not json")
    assert cached_baseline(npz, sidecar, key) is None


def test_a_report_folder_that_cannot_be_made_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    for out in (tmp_path / "a_file", tmp_path / "a_file" / "report"):
        assert main(["--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"error: cannot create the report folder {str(out)!r}" in err


def test_arguments_are_checked(capsys):
    with pytest.raises(SystemExit):
        main(["--jobs", "0"])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "alexnet"])
    assert "invalid choice: 'alexnet'" in capsys.readouterr().err
    assert parse_args([]).epochs == 20 and parse_args(["--fast"]).epochs == 2
    assert parse_args(["--fresh"]).fresh and not parse_args([]).fresh
