"""Comparisons never pass a partly diverged ensemble off as healthy, nor a NaN prediction as an accuracy."""

import csv
import io

import numpy as np

import infinite_width as iw
from infinite_width import optim
from infinite_width.problem import Problem
from infinite_width.workflow import Trajectory


def test_partly_diverged_ensembles_show_diverged_k_of_s_everywhere_metrics_are_averaged():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    y = np.eye(2)[(x[:, 0] > 0).astype(int)]
    problem = Problem(x[:8], y[:8], x[8:], y[8:])
    # Width 4 at a large rate: some of the 8 seeds blow up, the others train.
    ensemble = iw.solve(problem, iw.mlp(1, out_dim=2), iw.Finite(4, seeds=8), optim.sgd(3.0), steps=30, record=[0, 30],
                        progress=False)
    diverged = int(ensemble.diverged.sum())
    assert 0 < diverged < 8, ensemble.diverged
    # A diverged seed has no accuracy (argmax of NaN would have counted as class 0).
    assert np.all(np.isnan(ensemble.test_accuracy[ensemble.diverged, -1]))
    assert np.all(np.isfinite(ensemble.test_accuracy[~ensemble.diverged, -1]))
    keep = ~ensemble.diverged  # the seeds that trained, as an ensemble of their own
    healthy = Trajectory.from_arrays(
        **{name: getattr(ensemble, name)[keep] for name in ("train_predictions", "test_predictions", "train_loss",
                                                             "test_loss", "train_accuracy", "test_accuracy",
                                                             "diverged")},
        steps=ensemble.steps, metadata={**ensemble.metadata, "label": "healthy"},
    )
    table = iw.compare([ensemble, healthy])

    rows = table.rows()
    trained = f"0/{8 - diverged}"
    assert [row["diverged"] for row in rows] == [f"{diverged}/8", trained]
    assert rows[0]["test_accuracy"] == np.mean(ensemble.test_accuracy[keep, -1]) == rows[1]["test_accuracy"]
    csv_rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [row["diverged"] for row in csv_rows] == [f"{diverged}/8", trained]
    assert [row["seeds"] for row in csv_rows] == ["8", str(8 - diverged)]

    text = str(table)
    header, rule, first, second = text.splitlines()[:4]
    assert "diverged" in header.split() and f"{diverged}/8" in first.split() and trained in second.split()
    assert len({len(header), len(rule), len(first), len(second)}) == 1  # the new column keeps the table aligned
    warning = text.splitlines()[4]
    assert warning.startswith(f"WARNING: seeds diverged in {ensemble.label}:") and "healthy" not in warning
    assert "WARNING" not in str(iw.compare([healthy]))
