"""``python -m compression``: the main job end to end on a tiny budget, and its baseline cache."""

import csv
import hashlib
import json
import os

import pytest

from compression.__main__ import baseline_key, baseline_paths, cached_baseline, main, parse_args
from compression.report import FILES

FAST = ["--fast", "--epochs", "1", "--quiet"]


def test_main_job_writes_every_report_file_then_reuses_the_baseline(tmp_path, capsys):
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
        quantizers + ["PTQ + clipping"] * 3 + ["distillation", "distillation"] + ["low rank"] * 2
    )
    assert rows[-8]["bit_widths"] == "1.weight=2 3.weight=2 5.weight=2"
    assert (
        rows[-11]["bit_widths"]
        == "1.weight=2 2.output=2 3.weight=2 4.output=2 5.weight=2 5.output=8"
    )
    for r in rows:  # every point's file is kept, and its length is the row's bytes
        assert os.path.getsize(out / "models" / r["artifact"]) == int(r["bytes"])
    assert sorted(os.listdir(out / "models")) == sorted(r["artifact"] for r in rows)

    readme = (out / "README.md").read_text()
    assert "python -m compression --fast --epochs 1 --quiet --out" in readme
    assert "fast mode" in readme and "load average" in readme and "mnist-mini" in readme
    assert "trained in this run" in readme
    reports = (out / "size_reports.md").read_text()
    assert reports.count("## ") == 10 and "total (the compressed file)" in reports
    assert "| technique | setting | bytes |" in (out / "rows.md").read_text()

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
    assert npz.stat().st_mtime_ns == npz_stamp and sidecar.read_text() == sidecar_text
    assert not (out / "models" / "stale.tnc").exists()  # models/ holds this run's files only
    assert "reused from the cache (not retrained)" in (out / "README.md").read_text()
    with open(out / "rows.csv", newline="") as f:
        again = list(csv.DictReader(f))
    drop_time = [{k: v for k, v in r.items() if k != "time_ms"} for r in rows]
    assert [{k: v for k, v in r.items() if k != "time_ms"} for r in again] == drop_time


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


def test_arguments_are_checked(capsys):
    with pytest.raises(SystemExit):
        main(["--jobs", "0"])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "alexnet"])
    assert "invalid choice: 'alexnet'" in capsys.readouterr().err
    assert parse_args([]).epochs == 20 and parse_args(["--fast"]).epochs == 2
