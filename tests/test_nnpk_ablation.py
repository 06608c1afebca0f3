"""The NNPK ablation runner: files written, numbers reproduced independently, resumable, bad input."""

import json

import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels, losses
from infinite_width.experiments import nnpk_ablation
from infinite_width.kernels import nnpk
from infinite_width.limits.baselines import kernel_regression
from infinite_width.problem import Problem

RNG = np.random.RandomState(0)
X = RNG.randn(36, 5).astype(np.float32)
Y = np.eye(2, dtype=np.float32)[(X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)]
PROBLEM = Problem(X[:24], Y[:24], X[24:], Y[24:], name="tiny")
GRID = {"activation": ["relu", "erf"], "networks": [2, 4], "width": [8], "depth": [1]}
RIDGE = 1e-3


def accuracy_of(K_all):
    n = PROBLEM.n_train
    predictions = kernel_regression(K_all[:n, :n], PROBLEM.y_train, K_all[n:, :n], ridge=RIDGE)
    return float(losses.accuracy(predictions, PROBLEM.y_test))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    rows = nnpk_ablation.run(PROBLEM, GRID, out, seed=1, ridge=RIDGE, progress=False)
    return out, rows


def test_writes_one_json_per_point_and_summaries(first_run):
    out, rows = first_run
    points = nnpk_ablation.grid_points(GRID)
    assert len(rows) == len(points) == 4
    files = sorted((out / "points").glob("*.json"))
    assert [f.stem for f in files] == sorted(nnpk_ablation.point_name(p) for p in points)
    for row in rows:
        record = json.loads((out / "points" / f"{nnpk_ablation.point_name(row)}.json").read_text())
        assert record["result"] == row
        assert record["settings"]["ridge"] == RIDGE and record["settings"]["n_train"] == 24
    assert json.loads((out / "summary.json").read_text()) == rows
    lines = (out / "summary.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("activation,init,W_std")
    assert (out / "ablation.png").stat().st_size > 1000
    assert not list(out.rglob("*.tmp"))
    table = nnpk_ablation.markdown_table(rows)
    assert table.count("\n") == 6 and "nnpk_test_accuracy" in table


def test_numbers_match_an_independent_computation(first_run):
    _, rows = first_run
    x_all = np.concatenate([PROBLEM.x_train, PROBLEM.x_test])
    for row in rows:
        arch = iw.mlp(row["depth"], row["activation"], row["W_std"], row["b_std"], out_dim=2)
        # NNGP reference: our own kernel regression of the closed-form kernel.
        assert row["nngp_test_accuracy"] == pytest.approx(accuracy_of(kernels.nngp(arch, x_all)))
        assert row["ntk_test_accuracy"] == pytest.approx(accuracy_of(kernels.ntk(arch, x_all)))
        K = nnpk(arch, x_all, width=row["width"], n_samples=row["networks"], key=nnpk_ablation.point_key(1, row))
        assert row["nnpk_test_accuracy"] == pytest.approx(accuracy_of(K))
        assert 0.0 <= row["nnpk_test_accuracy"] <= 1.0 and -1.0 <= row["alignment_nngp"] <= 1.0


def test_rerun_skips_done_points_and_recomputes_deleted_ones_identically(first_run):
    out, rows = first_run
    files = sorted((out / "points").glob("*.json"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    assert nnpk_ablation.run(PROBLEM, GRID, out, seed=1, ridge=RIDGE, progress=False) == rows
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    # An interrupted run: one point missing is recomputed, with the same numbers.
    removed = files[0]
    before = json.loads(removed.read_text())["result"]
    removed.unlink()
    rerun = nnpk_ablation.run(PROBLEM, GRID, out, seed=1, ridge=RIDGE, progress=False, plot=False)
    after = json.loads(removed.read_text())["result"]
    assert {k: v for k, v in after.items() if k != "seconds"} == {k: v for k, v in before.items() if k != "seconds"}
    assert {f: f.stat().st_mtime_ns for f in files[1:]} == {f: mtimes[f] for f in files[1:]}
    assert len(rerun) == 4


def test_refuses_to_mix_settings(first_run):
    out, _ = first_run
    with pytest.raises(ValueError, match="other settings"):
        nnpk_ablation.run(PROBLEM, GRID, out, seed=2, ridge=RIDGE, progress=False)


@pytest.mark.parametrize(
    "grid, error, match",
    [
        ({"colour": ["red"]}, ValueError, "unknown grid axes"),
        ({"activation": ["swish"]}, ValueError, "unknown activation"),
        ({"init": ["xavier"]}, ValueError, "unknown init"),
        ({"width": [0]}, ValueError, "width"),
        ({"networks": []}, ValueError, "empty"),
        ({"W_std": [float("nan")]}, ValueError, "W_std"),
        ({"activation": "relu"}, TypeError, "list"),
        (["relu"], TypeError, "mapping"),
    ],
)
def test_bad_grids(grid, error, match):
    with pytest.raises(error, match=match):
        nnpk_ablation.grid_points(grid)


def test_bad_data_and_settings(tmp_path):
    with pytest.raises(TypeError, match="Problem"):
        nnpk_ablation.run(X, GRID, tmp_path, progress=False)
    images = Problem(RNG.randn(4, 3, 3, 1), Y[:4], RNG.randn(2, 3, 3, 1), Y[:2])
    with pytest.raises(ValueError, match="flatten"):
        nnpk_ablation.run(images, GRID, tmp_path, progress=False)
    with pytest.raises(ValueError, match="ridge"):
        nnpk_ablation.run(PROBLEM, GRID, tmp_path, ridge=-1.0, progress=False)
    # Arrays are accepted as a tuple and validated by Problem.
    with pytest.raises(ValueError, match="samples"):
        nnpk_ablation.run((X, Y[:3], X, Y), GRID, tmp_path, progress=False)
