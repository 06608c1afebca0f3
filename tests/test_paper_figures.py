"""The paper-figure scripts run end to end (tiny sizes) and resume from their saved results."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, out, *extra):
    return subprocess.run(
        [sys.executable, str(ROOT / "paper_figures" / script), "--quick", "--no-progress", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )


@pytest.mark.slow
def test_sernau_quick_writes_table_verdicts_figure_and_resumes(tmp_path):
    # The regimes claims 1 and 3 compare (a subset keeps the test short; the others share these code paths).
    regimes = ["--regimes", "traditional_adam", "adam_limit", "ntk_descent", "ntk_ridge"]
    first = _run("sernau_2024.py", tmp_path, *regimes)
    assert first.returncode == 0, first.stderr
    for name in ("sernau_2024.png", "sernau_2024.pdf", "results.csv", "table.md"):
        assert (tmp_path / name).stat().st_size > 500, name
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {(row["regime"], row["width"]): row for row in results["rows"]}
    assert set(rows) == {("traditional_adam", 16), ("traditional_adam", 32), ("adam_limit", "inf"),
                         ("ntk_descent", "inf"), ("ntk_ridge", "inf")}
    for row in rows.values():
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_accuracy_err"] >= 0.0
        # the chosen setting comes from the regime's own grid
        grid = {"ntk_ridge": [1e-3, 1e-1], "adam_limit": [0.01, 0.03]}.get(row["regime"])
        if grid is not None:
            assert row["setting"] in grid
    assert "Monte Carlo" in rows[("adam_limit", "inf")]["error"]
    assert "bootstrap" in rows[("ntk_ridge", "inf")]["error"]
    assert all(isinstance(row["limited_by"], str) for row in rows.values())
    verdicts = results["claims"]["1"]
    assert [v["claim"] for v in verdicts] == [1, 2, 3]
    assert verdicts[1]["verdict"] == "not run"  # no finite network without feature learning in this subset
    assert all(v["verdict"] in ("supported", "not supported", "inconclusive at this size") for v in verdicts[::2])
    assert all(v["text"] in first.stdout for v in verdicts)

    saved = sorted(tmp_path.glob("*/*.npz"))
    assert len(saved) == 2 * 2 + 3 * 2 + 5  # tuning: 2 widths x 2 rates, 3 regimes x 2 settings; 5 final solves
    # A report of a run still going: a regime whose final solve is missing is left out, nothing is computed.
    (tmp_path / "final" / "mlp1-ntk_ridge.npz").unlink()
    saved = [path for path in saved if path.exists()]
    mtimes = {path: path.stat().st_mtime_ns for path in saved}
    second = _run("sernau_2024.py", tmp_path, *regimes, "--finished-only")
    assert second.returncode == 0, second.stderr
    assert "not finished yet: mlp1-ntk_ridge" in second.stdout
    assert {path: path.stat().st_mtime_ns for path in saved} == mtimes  # loaded, not recomputed
    assert not (tmp_path / "final" / "mlp1-ntk_ridge.npz").exists()
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows == [row for row in results["rows"] if row["regime"] != "ntk_ridge"]


@pytest.mark.parametrize(
    "script, figure, points, extra",
    [
        ("nnpk_ablation.py", "ablation", ["points", "references"], ["--grid", "reduced", "--max-networks", "2"]),
        ("nnpk_alignment.py", "alignment", ["points"], []),
    ],
)
def test_nnpk_scripts_quick_write_numbers_and_figures_and_resume(tmp_path, script, figure, points, extra):
    first = _run(script, tmp_path, *extra)
    assert first.returncode == 0, first.stderr
    for name in ("summary.json", "summary.csv", "table.md", f"{figure}.png", f"{figure}.pdf"):
        assert (tmp_path / name).stat().st_size > 100, name
    assert (tmp_path / "table.md").read_text() in first.stdout
    saved = sorted(path for folder in points for path in (tmp_path / folder).glob("*.json"))
    assert saved
    if "--max-networks" in extra:  # every m-curve stops at the cap
        assert all(path.name.endswith("-m2.json") for path in (tmp_path / "points").glob("*.json"))
    mtimes = {path: path.stat().st_mtime_ns for path in saved}
    summary = (tmp_path / "summary.json").read_text()
    second = _run(script, tmp_path, *extra)
    assert second.returncode == 0, second.stderr
    assert {path: path.stat().st_mtime_ns for path in saved} == mtimes  # read back, not recomputed
    assert (tmp_path / "summary.json").read_text() == summary


def _script(name):
    """A paper_figures script as a module (its main() not run)."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), ROOT / "paper_figures" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", ["nnpk_ablation.py", "nnpk_alignment.py", "sernau_2024.py"])
def test_nnpk_scripts_name_the_data_variable_when_no_folder_is_given(script, monkeypatch, capsys):
    monkeypatch.delenv("INFINITE_WIDTH_DATA", raising=False)
    with pytest.raises(SystemExit):
        _script(script).parse_args(["--dataset", "mnist"])
    assert "INFINITE_WIDTH_DATA" in capsys.readouterr().err
    monkeypatch.setenv("INFINITE_WIDTH_DATA", str(ROOT / "missing-folder"))
    with pytest.raises(FileNotFoundError, match="missing-folder"):
        _script(script).parse_args(["--dataset", "mnist"])


def test_nnpk_ablation_reduced_grid_is_a_capped_subset_of_the_full_grid():
    grids = _script("nnpk_ablation.py").grids
    full, reduced = grids(), grids(grid="reduced", max_networks=256)
    assert {c.networks for c in full} == {1024} and {c.networks for c in reduced} == {256}
    uncapped = {dataclasses.replace(c, networks=1024) for c in reduced}
    assert uncapped < set(full)
    # each factor keeps both ends of its range, and the variants without a closed form
    assert {"mlp1", "mlp4", "conv2-maxpool", "conv2-layernorm"} <= {c.arch for c in reduced}
    assert {64, 1024} <= {c.width for c in reduced} and "tanh" in {c.activation for c in reduced}
    with pytest.raises(ValueError, match="unknown grid"):
        grids(grid="small")
    with pytest.raises(ValueError, match="max_networks"):
        grids(max_networks=0)


def test_nnpk_alignment_models_option(monkeypatch, capsys):
    parse_args = _script("nnpk_alignment.py").parse_args
    monkeypatch.delenv("INFINITE_WIDTH_DATA", raising=False)
    args = parse_args(["--dataset", "digits", "--models", "conv2:16", "mlp2:64"])
    assert args.models == [("conv2", 16), ("mlp2", 64)]
    for bad in ("mlp9:64", "mlp2", "mlp2:0"):
        with pytest.raises(SystemExit):
            parse_args(["--dataset", "digits", "--models", bad])
        assert "ARCH:WIDTH" in capsys.readouterr().err


def test_sernau_grids_from_the_command_line(monkeypatch):
    module = _script("sernau_2024.py")
    monkeypatch.delenv("INFINITE_WIDTH_DATA", raising=False)
    default = module.config_of(module.parse_args(["--dataset", "digits"]))
    wider = module.config_of(module.parse_args(["--dataset", "digits", "--adam-lrs", "1e-3", "3e-3", "1e-2",
                                                "--limit-adam-lrs", "0.1"]))
    assert wider.adam_lrs == (1e-3, 3e-3, 1e-2) and wider.limit_adam_lrs == (0.1,)
    assert wider.sgd_lrs == default.sgd_lrs  # an option not given keeps its default
    quick = module.config_of(module.parse_args(["--quick", "--sgd-lrs", "0.2"]))
    assert quick.sgd_lrs == (0.2,) and quick.adam_lrs == (1e-3, 1e-2)  # the rest: the quick grids
    with pytest.raises(ValueError, match="adam_lrs must be a non-empty grid of positive numbers"):
        module.config_of(module.parse_args(["--dataset", "digits", "--adam-lrs", "0"]))
