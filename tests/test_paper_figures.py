"""The paper-figure scripts run end to end (tiny sizes) and resume from their saved results."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script, out, *extra):
    return subprocess.run(
        [sys.executable, str(ROOT / "paper_figures" / script), "--quick", "--no-progress", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )


def test_adam_closes_the_gap_quick_writes_figure_table_and_resumes(tmp_path):
    first = _run("adam_closes_the_gap.py", tmp_path)
    assert first.returncode == 0, first.stderr
    figure = tmp_path / "adam_closes_the_gap.png"
    assert figure.stat().st_size > 20_000
    rows = (tmp_path / "comparison.csv").read_text().splitlines()
    labels = {row.split(",")[0] for row in rows[1:]}
    assert {"NTK sgd all", "limit adam all", "NNGP sgd readout", "limit adam readout"} <= labels
    assert "w=64 adam all" in first.stdout and "limit adam all" in first.stdout

    results = sorted((tmp_path / "results").glob("*.npz"))
    mtimes = {path: path.stat().st_mtime_ns for path in results}
    second = _run("adam_closes_the_gap.py", tmp_path)
    assert second.returncode == 0, second.stderr
    assert {path: path.stat().st_mtime_ns for path in results} == mtimes  # loaded, not recomputed
    assert (tmp_path / "comparison.csv").read_text().splitlines() == rows
