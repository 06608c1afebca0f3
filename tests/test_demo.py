"""The main demo runs end to end (``--quick``) in a subprocess and writes its table and figure; the figure names what it shows."""

import argparse
import csv
import re
import subprocess
import sys

import pytest

from infinite_width.workflow import Trajectory


def _assert_the_figure_names_what_it_shows(results):
    """Issue 21: 12 finite curves were told apart only by transparency, with no width labels, and nothing
    named the data set or the architecture; issue 13: one shared legend, colours from the metadata."""
    import matplotlib.colors

    from infinite_width.experiments import demo
    from infinite_width.workflow import palette

    figure = demo.figure(results)
    title = figure.get_suptitle()
    assert "digits: 40 train / 40 test" in title and "mlp1-relu" in title and "7 steps" in title
    # one column per training family: titled by it, its legend naming each width and the limit
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_legend() is not None}
    assert set(panels) == {"sgd, all layers", "adam, all layers", "sgd, readout only", "adam, readout only"}
    legend = [text.get_text() for text in panels["adam, all layers"].get_legend().get_texts()]
    assert legend == ["width 16", "width 64", "Adam-like limit"]
    assert [t.get_text() for t in panels["sgd, readout only"].get_legend().get_texts()][-1] == "NNGP descent"
    # widths differ by opaque shades of the family colour, lighter when narrower, not by transparency
    lines = {line.get_label(): line for line in panels["adam, all layers"].get_lines()}
    shades = [matplotlib.colors.to_rgb(lines[f"w={w} adam all"].get_color()) for w in (16, 64)]
    assert all(lines[f"w={w} adam all"].get_alpha() in (None, 1.0) for w in (16, 64))
    assert sum(shades[0]) > sum(shades[1])
    assert shades[1] == pytest.approx(matplotlib.colors.to_rgb(palette.COLORS[("adam", False)]))
    # one figure legend for families and line styles
    assert len(figure.legends) == 1
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert {"adam, all layers", "sgd, readout only", "ntk_ridge"} <= set(labels) and len(labels) == len(set(labels))
    # the width panel: the widths as tick labels, the limit's Monte Carlo error as a band of its colour
    width_panel = next(ax for ax in figure.axes if ax.get_title() == "final test accuracy against width")
    assert [tick.get_text() for tick in width_panel.get_xticklabels()] == ["16", "64"]
    adam_rgb = matplotlib.colors.to_rgb(palette.COLORS[("adam", False)])
    assert any(tuple(patch.get_facecolor()[:3]) == adam_rgb for patch in width_panel.patches)


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_resumes(tmp_path):
    # One demo run serves every check, its figure included: its solves are most of the cost (compilation).
    # --steps given explicitly wins over --quick (issue 9, item 14); the other sizes are --quick's
    command = [sys.executable, "-m", "infinite_width", "demo", "--quick", "--steps", "7", "--no-progress",
               "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "40 train / 40 test" in result.stdout
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    assert (tmp_path / "demo.pdf").read_bytes()[:5] == b"%PDF-"
    with open(tmp_path / "comparison.csv") as file:
        rows = list(csv.DictReader(file))
    labels = {row["label"] for row in rows}
    for expected in ("NTK sgd all", "NNGP sgd readout", "limit adam all", "limit adam readout",
                     "w=16 sgd all", "w=64 adam readout", "nngp_posterior", "ntk_ridge"):
        assert expected in labels, labels
    for row in rows:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0 and float(row["test_loss"]) >= 0.0
        assert row["step"] in ("7", "inf")
    with open(tmp_path / "distances.csv") as file:
        distances = list(csv.DictReader(file))
    # every finite network is paired with the limit of its optimizer and trained layers, and nothing else
    assert {(d["a"], d["b"]) for d in distances} == {
        (f"w={w} {o} {layers}", f"{'limit' if o == 'adam' else 'NNGP' if layers == 'readout' else 'NTK'} {o} {layers}")
        for w in (16, 64) for o in ("sgd", "adam") for layers in ("all", "readout")
    }
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
    _assert_the_figure_names_what_it_shows({path.stem: Trajectory.load(path) for path in results})


def test_demo_rejects_unknown_arguments():
    result = subprocess.run([sys.executable, "-m", "infinite_width", "demo", "--widths", "ten"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "invalid int value" in result.stderr
    result = subprocess.run([sys.executable, "-m", "infinite_width", "fly"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_options_given_explicitly_win_over_quick():
    from infinite_width.experiments import demo

    parser = demo.add_arguments(argparse.ArgumentParser())
    quick = demo.resolve_arguments(parser.parse_args(["--quick", "--n-train", "20", "--widths", "8"]))
    assert (quick.n_train, quick.widths, quick.steps, quick.n_test) == (20, [8], demo.QUICK["steps"],
                                                                        demo.QUICK["n_test"])
    full = demo.resolve_arguments(parser.parse_args(["--samples", "64"]))
    assert (full.samples, full.steps, full.n_train) == (64, demo.DEFAULTS["steps"], demo.DEFAULTS["n_train"])


@pytest.mark.parametrize("arguments, message", [
    (["--samples", "3"], "samples .3. must be a multiple of replicas"),
    (["--widths", "16", "0"], "--widths must be >= 1"),
    (["--n-train", "0"], "--n-train must be >= 1"),
])
def test_bad_options_are_refused_before_any_solve(tmp_path, capsys, arguments, message):
    """Issue 9, item 14: `--samples 3` failed with a traceback after earlier jobs had run."""
    from infinite_width.__main__ import main

    assert main(["demo", "--quick", "--no-progress", "--out", str(tmp_path / "out"), *arguments]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not list(tmp_path.rglob("*.npz"))


def test_an_unwritable_output_folder_is_refused_before_any_solve(tmp_path, capsys):
    """Issue 9, item 14: a sweep into a read-only folder computed its first job before failing."""
    from infinite_width.__main__ import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--quick", "--no-progress", "--out", str(blocker / "out")]) == 2
    assert "--out: cannot write in" in capsys.readouterr().err

