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
def test_sernau_quick_writes_table_verdicts_figures_and_resumes(tmp_path, capsys):
    # The regimes claims 1 and 3 compare (a subset keeps the test short; the others share these code paths).
    # The first run is the command line as a user runs it; the report, the resumed run and the combination
    # call the script's main() in this process, which has compiled their programs already.
    regimes = ["--regimes", "practitioner", "adam_limit", "ntk_descent", "ntk_ridge", "--losses", "cross_entropy", "mse"]
    first = _run("sernau_2024.py", tmp_path, *regimes)
    assert first.returncode == 0, first.stderr
    stems = ["accuracy", "learning_curves", "claim1", "claim2", "claim3"]
    for name in [f"sernau_2024_{stem}.{kind}" for stem in stems for kind in ("png", "pdf")] + ["results.csv", "table.md"]:
        assert (tmp_path / name).stat().st_size > 500, name
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {(row["n_train"], row["regime"], row["loss"], row["width"]): row for row in results["rows"]}
    expected = {(n, "practitioner", loss, 16) for n in (60, 120) for loss in ("cross_entropy", "mse")}
    expected |= {(n, regime, "mse", "inf") for n in (60, 120) for regime in ("adam_limit", "ntk_descent", "ntk_ridge")}
    assert set(rows) == expected
    for row in rows.values():
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_accuracy_err"] > 0.0
        assert isinstance(row["limited_by"], str) and row["landing"]
    ridge = rows[(60, "ntk_ridge", "mse", "inf")]
    assert float(ridge["setting"]) in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the quick ridge grid, extended within [1e-4, 1]
    assert "Monte Carlo" in rows[(60, "adam_limit", "mse", "inf")]["error"]
    assert "2 seeds" in rows[(60, "practitioner", "cross_entropy", 16)]["error"]
    for n in ("60", "120"):
        verdicts = results["claims"][n]
        assert [v["claim"] for v in verdicts] == [1, 2, 3]
        assert verdicts[1]["verdict"] == "not run"  # no finite network without feature learning in this subset
        assert all(v["verdict"] in ("supported", "not supported", "inconclusive") for v in verdicts[::2])
        assert all(v["text"] in first.stdout for v in verdicts)
    assert (tmp_path / "table.md").read_text() in first.stdout

    saved = sorted((tmp_path / "runs").glob("*.npz"))
    mtimes = {path: path.stat().st_mtime_ns for path in saved}
    # A report of a run still going: an entry with a run missing is left out, nothing is computed.
    missing = next(path for path in saved if path.name.startswith("n120-ntk_ridge-mse-"))
    missing.unlink()
    script, quick = _script("sernau_2024.py"), ["--quick", "--no-progress", "--out", str(tmp_path), *regimes]
    capsys.readouterr()
    assert script.main(quick + ["--finished-only"]) == 0
    assert "not finished yet: n120-ntk_ridge-mse" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in saved if path != missing} == {
        path: mtime for path, mtime in mtimes.items() if path != missing}
    assert not missing.exists()
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert len(rows) == len(expected) - 1
    # Resumed: the missing run is recomputed, every other one read back.
    assert script.main(quick) == 0
    assert missing.exists()
    assert {path: path.stat().st_mtime_ns for path in saved if path != missing} == {
        path: mtime for path, mtime in mtimes.items() if path != missing}
    untimed = lambda rows: [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]  # noqa: E731
    assert untimed(json.loads((tmp_path / "results.json").read_text())["rows"]) == untimed(results["rows"])
    combined = tmp_path / "combined"
    assert script.main(["--combine", str(tmp_path), str(tmp_path), "--out", str(combined)]) == 0
    assert (combined / "sernau_2024_claim3.pdf").stat().st_size > 500


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
    saved = sorted(path for folder in points for path in (tmp_path / folder).glob("*.npz"))
    assert saved
    if "--max-networks" in extra:  # every m-curve stops at the cap
        assert all(path.name.endswith("-m2.npz") for path in (tmp_path / "points").glob("*.npz"))
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


def test_sernau_options_defaults_and_honest_help(monkeypatch, capsys):
    module = _script("sernau_2024.py")
    monkeypatch.delenv("INFINITE_WIDTH_DATA", raising=False)
    mlp = module.parse_args(["--dataset", "digits"])
    assert mlp.n_train == (200, 500, 1000) and mlp.pool == 1 and mlp.widths == [1024]
    conv = module.parse_args(["--dataset", "digits", "--arch", "conv2", "--conv-n-train", "300"])
    assert conv.n_train == (300,) and conv.pool == 1 and conv.widths == [128] and conv.n_test == 260
    config = module.config_of(module.parse_args(["--dataset", "digits", "--patience", "4", "--losses", "mse"]))
    assert config.budget.patience == 4 and config.budget.batch_size == 128 and config.losses == ("mse",)
    assert config.grids == () and config.regime("practitioner").grid.values == (3e-4, 1e-3, 3e-3)
    quick = module.config_of(module.parse_args(["--quick"]))
    assert quick.n_train == (60, 120) and quick.regime("ntk_ridge").grid.values == (1e-3, 1e-1)
    with pytest.raises(SystemExit):
        module.parse_args(["--dataset", "digits", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "per data set" not in text and "(seconds)" not in text
    assert "default: 1000 2000 5000 10000 (mnist)" in text and "1000 2000 5000 9000 (cifar10)" in text
    with pytest.raises(SystemExit):
        module.main(["--dataset", "digits", "--samples", "30", "--replicas", "4"])
