"""The NNPK ablation: one-factor grids, the validation ridge rule and bootstrap checked independently,
the m-curve from one pass equal to separate NNPKs, files, resuming, bad input."""

import json
import warnings

import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels
from infinite_width.experiments import bootstrap, images, nnpk_ablation
from infinite_width.experiments.nnpk_ablation import Config, one_factor_grid
from infinite_width.experiments.store import Store
from infinite_width.problem import Problem

RNG = np.random.RandomState(0)


def _labels(x):
    return np.eye(2, dtype=np.float32)[(x.reshape(len(x), -1)[:, :3].sum(1) > 0).astype(int)]


X = RNG.randn(40, 5).astype(np.float32)
IMAGES = RNG.randn(30, 4, 4, 1).astype(np.float32)
PROBLEMS = {
    "mlp": Problem(X[:30], _labels(X[:30]), X[30:], _labels(X[30:]), name="tiny vectors"),
    "conv": Problem(IMAGES[:20], _labels(IMAGES[:20]), IMAGES[20:], _labels(IMAGES[20:]), name="tiny images"),
}
# The base and a variant without a closed form, and a conv net without one: three configurations, two references.
CONFIGS = one_factor_grid(Config("mlp2", width=6, networks=5), {"activation": ["tanh"]}) + [
    Config("conv2-maxpool", width=3, networks=2)
]
RIDGES = (1e-4, 1e-2, 1.0)
OPTIONS = dict(seed=1, ridges=RIDGES, resamples=200, progress=False)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    return out, nnpk_ablation.run(PROBLEMS, CONFIGS, out, **OPTIONS)


def test_one_factor_grid_varies_one_field_at_a_time():
    base = Config("mlp2")
    grid = one_factor_grid(base, {"arch": ["mlp1", "mlp2"], "width": [64], "init": ["uniform"]})
    assert grid[0] == base and len(grid) == 4  # mlp2 is the base's value: skipped
    for config in grid[1:]:
        differing = [f for f in ("arch", "activation", "init", "width", "networks")
                     if getattr(config, f) != getattr(base, f)]
        assert len(differing) == 1
    assert [c.family for c in one_factor_grid(Config("conv2"), {"arch": ["myrtle5"]})] == ["conv", "conv"]


def test_ridge_is_chosen_on_validation_and_bootstrap_matches_the_binomial_error():
    # An independent implementation of the rule: numpy solves, the best validation accuracy, ties to the larger ridge.
    problem = PROBLEMS["mlp"]
    x_all = np.concatenate([problem.x_train, problem.x_test]).astype(np.float64)
    K = np.exp(-((x_all[:, None] - x_all[None]) ** 2).sum(-1) / 10) + 0.1  # Gaussian kernel: positive definite
    result = nnpk_ablation.evaluate_kernel(K, problem, validation_fraction=0.2, ridges=RIDGES, resamples=4000)

    def fit(n_rows, ridge, rows_out):
        A = K[:n_rows, :n_rows] + ridge * np.mean(np.diag(K[:n_rows, :n_rows])) * np.eye(n_rows)
        return K[rows_out, :n_rows] @ np.linalg.solve(A, problem.y_train[:n_rows])

    correct = lambda f, y: np.argmax(f, 1) == np.argmax(y, 1)
    validation = [correct(fit(24, r, slice(24, 30)), problem.y_train[24:]).mean() for r in RIDGES]
    chosen = max(range(3), key=lambda i: (validation[i], RIDGES[i]))
    assert result["validation_accuracy"] == pytest.approx(validation)
    assert result["ridge"] == RIDGES[chosen]
    hits = correct(fit(30, RIDGES[chosen], slice(30, 40)), problem.y_test)
    assert result["test_accuracy"] == pytest.approx(hits.mean())
    # The bootstrap standard error of a mean of 0/1 outcomes is the binomial one, sqrt(p (1 - p) / n).
    outcomes = np.arange(400) < 300
    scores = bootstrap.accuracy_interval(outcomes, resamples=4000, seed=3)
    assert scores["se"] == pytest.approx(np.sqrt(0.75 * 0.25 / 400), rel=0.06)
    assert scores["low"] < 0.75 < scores["high"] and scores["high"] - scores["low"] == pytest.approx(
        2 * 1.96 * scores["se"], rel=0.1)


def test_curve_from_one_pass_equals_separate_nnpks(first_run):
    _, records = first_run
    nnpk_records = [r for r in records if r["kernel"] == "nnpk"]
    assert [r["arch"] for r in nnpk_records] == ["mlp2", "mlp2", "conv2-maxpool"]
    assert [r["has_closed_form"] for r in nnpk_records] == [True, False, False]
    references = [r for r in records if r["kernel"] == "nngp"]
    assert [(r["arch"], r["activation"]) for r in references] == [("mlp2", "relu")]
    for config, record in zip(CONFIGS, nnpk_records):
        assert [p["networks"] for p in record["curve"]] == ([1, 2, 4, 5] if config.networks == 5 else [1, 2])
        problem = PROBLEMS[config.family]
        x_all = np.concatenate([problem.x_train, problem.x_test])
        arch = config.architecture(2)
        K = kernels.nnpk(arch, x_all, width=config.width, networks=config.networks,
                         key=nnpk_ablation.point_key(1, config))
        expected = nnpk_ablation.evaluate_kernel(K, problem, ridges=RIDGES, resamples=200, seed=1)
        last = record["curve"][-1]
        assert last["test_accuracy"] == pytest.approx(expected["test_accuracy"])
        assert last["ridge"] == expected["ridge"]
        assert record["prng"] == kernels.DEFAULT_PRNG and record["cpu_seconds"] > 0
    nngp = kernels.nngp(iw.mlp(2, "relu", np.sqrt(2), 0.1, out_dim=2), X)
    expected = nnpk_ablation.evaluate_kernel(nngp, PROBLEMS["mlp"], ridges=RIDGES, resamples=200, seed=1)
    assert references[0]["test_accuracy"] == pytest.approx(expected["test_accuracy"])
    # The linear kernels of the inputs come first, one per family.
    assert [(r["kernel"], r["family"]) for r in records[:2]] == [("linear", "mlp"), ("linear", "conv")]
    images = IMAGES.reshape(30, -1).astype(np.float64)
    expected = nnpk_ablation.evaluate_kernel(images @ images.T, PROBLEMS["conv"], ridges=RIDGES, resamples=200, seed=1)
    assert records[1]["test_accuracy"] == pytest.approx(expected["test_accuracy"])


def test_files_summaries_table_and_figure(first_run):
    out, records = first_run
    assert sorted(p.stem for p in (out / "points").glob("*.npz")) == sorted(c.name for c in CONFIGS)
    assert sorted(p.stem for p in (out / "references").glob("*.npz")) == ["linear-conv", "linear-mlp", "mlp2-relu"]
    assert json.loads((out / "summary.json").read_text()) == records
    lines = (out / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("family,arch,activation") and len(lines) == 1 + 2 + 4 + 1 + 4 + 2
    table = nnpk_ablation.markdown_table(records)
    assert table.count("\n") == 2 + 3 and "| -- |" in table  # tanh and MaxPool have no closed form
    figure = nnpk_ablation.figure(records)
    assert len(figure.legends) == 1
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "tanh (no closed form)" in labels and any(label.startswith("base mlp2") for label in labels)
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["MLP: activation", "conv: base"]  # a family without variants (yet) still gets its panel


def test_rerun_skips_finished_points_and_recomputes_a_deleted_one_identically(first_run, tmp_path_factory):
    out, records = first_run
    files = sorted((out / "points").glob("*.npz")) + sorted((out / "references").glob("*.npz"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    assert nnpk_ablation.run(PROBLEMS, CONFIGS, out, **OPTIONS) == records
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    removed = files[0]
    before = Store(removed.parent).read(removed.stem)[1]
    removed.unlink()
    # finished_only reports the rest and computes nothing
    name = lambda r: (r["kernel"], r["arch"], r["activation"], r.get("width"))
    partial = nnpk_ablation.run(PROBLEMS, CONFIGS, out, **OPTIONS, finished_only=True)
    assert not removed.exists()
    assert [name(r) for r in partial] == [name(r) for r in records if name(r) != name(before)]
    nnpk_ablation.run(PROBLEMS, CONFIGS, out, **OPTIONS)
    after = Store(removed.parent).read(removed.stem)[1]
    timing = ("seconds", "cpu_seconds", "load_start", "load_end")
    assert {k: v for k, v in after.items() if k not in timing} == {k: v for k, v in before.items() if k not in timing}
    # Records of other settings are not mixed in: they are recomputed, with a warning naming the file.
    other = tmp_path_factory.mktemp("other")
    for path in files:
        (other / path.parent.name).mkdir(exist_ok=True)
        (other / path.parent.name / path.name).write_bytes(path.read_bytes())
    seed_2 = {**OPTIONS, "seed": 2}
    with pytest.warns(UserWarning, match="holds a different job"):
        nnpk_ablation.run(PROBLEMS, CONFIGS[:1], other, **seed_2)
    stored = {path: path.stat().st_mtime_ns for path in other.glob("*/*.npz")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the seed-2 records are now the stored ones: read back, nothing recomputed
        nnpk_ablation.run(PROBLEMS, CONFIGS[:1], other, **seed_2)
    assert {path: path.stat().st_mtime_ns for path in other.glob("*/*.npz")} == stored


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: Config("resnet"), ValueError, "unknown architecture"),
        (lambda: Config("mlp2", activation="swish"), ValueError, "unknown activation"),
        (lambda: Config("mlp2", init="xavier"), ValueError, "unknown init"),
        (lambda: Config("mlp2", width=0), ValueError, "width"),
        (lambda: Config("mlp2", networks=1.5), ValueError, "networks"),
        (lambda: one_factor_grid(Config("mlp2"), {"depth": [3]}), ValueError, "unknown Config fields"),
        (lambda: one_factor_grid(Config("mlp2"), {"init": "uniform"}), TypeError, "list"),
        (lambda: images.pool_images(IMAGES, 3), ValueError, "cannot be pooled"),
        (lambda: images.pool_images(X, 2), ValueError, "NHWC"),
        (lambda: nnpk_ablation.run({"mlp": PROBLEMS["conv"]}, CONFIGS[:1], "unused", progress=False),
         ValueError, "flatten"),
        (lambda: nnpk_ablation.run({"mlp": PROBLEMS["mlp"]}, CONFIGS, "unused", progress=False), TypeError, "conv"),
        (lambda: nnpk_ablation.evaluate_kernel(np.eye(5), PROBLEMS["mlp"]), ValueError, "K_all"),
        (lambda: nnpk_ablation.evaluate_kernel(np.eye(40), PROBLEMS["mlp"], validation_fraction=0.0), ValueError,
         "validation"),
    ],
)
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_pooling_averages_blocks():
    pooled = images.pool_images(IMAGES, 2)
    assert pooled.shape == (30, 2, 2, 1)
    np.testing.assert_allclose(pooled[3, 1, 0, 0], IMAGES[3, 2:4, 0:2, 0].mean(), rtol=1e-6)
