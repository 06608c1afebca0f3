"""The alignment study: Adam trains, the alignments are recomputed independently, files, resuming, bad input."""

import json

import jax
import numpy as np
import pytest

import infinite_width as iw
from infinite_width import kernels
from infinite_width.experiments import nnpk_ablation, nnpk_alignment
from infinite_width.problem import Problem

DIGITS = iw.datasets.load("digits", n_train=60, n_test=30, seed=0, flatten=False)
PROBLEM = Problem.from_dataset(DIGITS)
MODELS = [("mlp2", 8), ("conv2", 3)]
TRAINING = nnpk_alignment.Training(steps=6, batch_size=20)
OPTIONS = dict(models=MODELS, seeds=2, training=TRAINING, held_out=20, networks=3, seed=4, progress=False)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("alignment")
    return out, nnpk_alignment.run(PROBLEM, out, **OPTIONS)


def cka(K1, K2):
    """Centered kernel alignment from its definition, in numpy."""
    H = np.eye(len(K1)) - 1.0 / len(K1)
    A, B = H @ K1 @ H, H @ K2 @ H
    return np.sum(A * B) / np.sqrt(np.sum(A * A) * np.sum(B * B))


def test_plain_adam_fits_a_small_training_set():
    net = iw.finite.network(iw.mlp(1, "relu", out_dim=10), 64, parametrization="standard")
    x = PROBLEM.x_train.reshape(60, -1)
    initial, trained = nnpk_alignment.train_adam(net, x, PROBLEM.y_train, key=jax.random.PRNGKey(0),
                                                 training=nnpk_alignment.Training(steps=60, batch_size=20, lr=1e-2))
    accuracy = lambda params: np.mean(np.argmax(net.apply(params, x), 1) == DIGITS.labels_train)
    assert accuracy(initial) < 0.4 and accuracy(trained) == 1.0
    # The same key gives the same networks.
    again = nnpk_alignment.train_adam(net, x, PROBLEM.y_train, key=jax.random.PRNGKey(0),
                                      training=nnpk_alignment.Training(steps=60, batch_size=20, lr=1e-2))[1]
    np.testing.assert_array_equal(np.asarray(again[0]["W"]), np.asarray(trained[0]["W"]))


def test_alignments_match_an_independent_computation(first_run):
    _, records = first_run
    assert [(r["arch"], r["width"]) for r in records] == MODELS
    x_held, y_held = PROBLEM.x_test[:20], PROBLEM.y_test[:20]
    record = records[0]  # the MLP: retrain its first seed with the study's key and recompute
    arch = nnpk_ablation.architecture("mlp2", "relu", 10)
    net = iw.finite.network(arch, 8, parametrization="standard")
    x_train, x_eval = PROBLEM.x_train.reshape(60, -1), x_held.reshape(20, -1)
    key = nnpk_alignment.model_key(4, "mlp2", 8, 0)
    initial, params = nnpk_alignment.train_adam(net, x_train, PROBLEM.y_train, key=key, training=TRAINING)
    f = np.asarray(net.apply(params, x_eval), np.float64)
    phi = np.asarray(net.features(params, x_eval), np.float64)
    nnpk = np.asarray(kernels.nnpk(arch, x_eval, width=8, networks=3, key=4))
    nngp = np.asarray(kernels.nngp(arch, x_eval))
    conv_nnpk = np.asarray(kernels.nnpk(nnpk_ablation.architecture("conv2", "relu", 10), x_held, width=64, networks=3, key=4))
    alignment = record["alignment"]
    assert alignment["output"]["nnpk"][0] == pytest.approx(cka(f @ f.T, nnpk), abs=1e-5)
    assert alignment["features"]["nnpk"][0] == pytest.approx(cka(phi @ phi.T, nnpk), abs=1e-5)
    assert alignment["features"]["nngp"][0] == pytest.approx(cka(phi @ phi.T, nngp), abs=1e-5)
    assert alignment["output"]["nnpk_other_arch"][0] == pytest.approx(cka(f @ f.T, conv_nnpk), abs=1e-5)
    assert alignment["output"]["input"][0] == pytest.approx(cka(f @ f.T, x_eval @ x_eval.T), abs=1e-5)
    f0 = np.asarray(net.apply(initial, x_eval), np.float64)
    assert alignment["output"]["init"][0] == pytest.approx(cka(f @ f.T, f0 @ f0.T), abs=1e-5)
    assert record["label_alignment"]["nnpk"] == pytest.approx(cka(nnpk, y_held @ y_held.T), abs=1e-5)
    # The m-curve ends at the NNPK of all networks.
    assert [p["networks"] for p in record["nnpk_curve"]] == [1, 2, 3]
    assert record["nnpk_curve"][-1]["features"] == pytest.approx(alignment["features"]["nnpk"])
    for target in nnpk_alignment.TARGETS:
        for values in alignment[target].values():
            assert len(values) == 2 and all(-1 <= v <= 1 for v in values)


def test_files_tables_figure_and_resume(first_run):
    out, records = first_run
    points = sorted((out / "points").glob("*.npz"))
    assert [p.stem for p in points] == ["conv2-w3", "mlp2-w8"]
    assert {p.stem for p in (out / "kernels").glob("*.npz")} == {
        "nngp-mlp2-relu", "nngp-conv2-relu", "nnpk-conv2-relu-w64-m3", "nnpk-mlp2-relu-w512-m3",
        "nnpk-mlp2-erf-w512-m3", "nnpk-conv2-erf-w64-m3"}
    assert json.loads((out / "summary.json").read_text()) == records
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert header == "arch,width,measure,target,kernel,mean,std,seeds"
    for target in nnpk_alignment.TARGETS:
        assert nnpk_alignment.markdown_table(records, target).count("\n") == 2 + len(MODELS)
    assert len(nnpk_alignment.figure(records).legends) == 1
    mtimes = {p: p.stat().st_mtime_ns for p in points}
    assert nnpk_alignment.run(PROBLEM, out, **OPTIONS) == records
    assert {p: p.stat().st_mtime_ns for p in points} == mtimes


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(models=[("resnet", 8)]), "unknown trained architecture"),
        (dict(models=[("mlp2", 0)]), "widths"),
        (dict(seeds=0), "seeds"),
        (dict(held_out=1000), "held_out"),
        (dict(problem=Problem(PROBLEM.x_train.reshape(60, -1), PROBLEM.y_train, PROBLEM.x_test.reshape(30, -1),
                              PROBLEM.y_test)), "image"),
    ],
)
def test_bad_input(tmp_path, change, match):
    arguments = {**OPTIONS, "problem": PROBLEM, **change}
    with pytest.raises(ValueError, match=match):
        nnpk_alignment.run(arguments.pop("problem"), tmp_path, **arguments)
