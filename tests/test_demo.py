"""The main demo runs end to end (``--quick``) in a subprocess and writes its table and figure."""

import csv
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_resumes(tmp_path):
    command = [sys.executable, "-m", "infinite_width", "demo", "--quick", "--no-progress", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    with open(tmp_path / "comparison.csv") as file:
        rows = list(csv.DictReader(file))
    labels = {row["label"] for row in rows}
    for expected in ("NTK sgd all", "NNGP sgd readout", "limit adam all", "limit adam readout",
                     "w=16 sgd all", "w=64 adam readout", "nngp_posterior", "ntk_ridge"):
        assert expected in labels, labels
    for row in rows:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0 and float(row["test_loss"]) >= 0.0
    with open(tmp_path / "distances.csv") as file:
        distances = list(csv.DictReader(file))
    assert {(d["a"], d["b"]) for d in distances} >= {("w=64 adam all", "limit adam all")}
    assert all(float(d["test_distance"]) > 0 for d in distances)
    # the printed table names every solve
    for label in labels:
        assert label in result.stdout
    # a second run loads every result instead of recomputing it
    results = sorted((tmp_path / "results").glob("*.npz"))
    mtimes = [p.stat().st_mtime_ns for p in results]
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in results] == mtimes


def test_demo_rejects_unknown_arguments():
    result = subprocess.run([sys.executable, "-m", "infinite_width", "demo", "--widths", "ten"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "invalid int value" in result.stderr
    result = subprocess.run([sys.executable, "-m", "infinite_width", "fly"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "invalid choice" in result.stderr
