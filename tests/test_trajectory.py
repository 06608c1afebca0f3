"""Trajectory files: exact compressed round trips, clear errors for unreadable files, sane permissions, orphan cleanup;
equality that ignores timings."""

import copy
import json
import math
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import infinite_width as iw
from infinite_width import optim
from infinite_width._src import files
from infinite_width.problem import Problem
from infinite_width.workflow import TIMING_KEYS, Trajectory, TrajectoryFileError


def _trajectory(seeds=2, recorded=3, n=5, nt=4, k=2, seed=0) -> Trajectory:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(seeds, recorded, n, k)).astype(np.float32)
    test = rng.normal(size=(seeds, recorded, nt, k)).astype(np.float32)
    test[0, -1, 0, 0] = np.nan  # NaN must survive the round trip and compare equal to itself
    metrics = {name: rng.uniform(size=(seeds, recorded)) for name in
               ("train_loss", "test_loss", "train_accuracy", "test_accuracy")}
    return Trajectory.from_arrays(
        steps=np.arange(recorded) * 5, train_predictions=train, test_predictions=test,
        diverged=np.array([True] + [False] * (seeds - 1)), test_stderr=np.abs(test[0]),
        train_stderr=np.abs(train[0]), extras={"test_variance": rng.uniform(size=(nt, k))},
        metadata={"regime": "finite", "label": "synthetic", "wall_time": 1.25, "info": {"setup_time_s": 0.5}},
        **metrics,
    )


FIELDS = ("steps", "train_predictions", "test_predictions", "train_loss", "test_loss", "train_accuracy",
          "test_accuracy", "diverged", "train_stderr", "test_stderr")


def _arrays(trajectory) -> dict:
    return {**{name: getattr(trajectory, name) for name in FIELDS}, **trajectory.extras}


def test_compressed_save_round_trips_exactly_and_reads_uncompressed_files(tmp_path):
    original = _trajectory()
    path = original.save(tmp_path / "t")
    assert path.endswith("t.npz")
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    loaded = Trajectory.load(path)
    assert loaded == original and loaded.metadata == original.metadata
    arrays = _arrays(original)
    for name, array in _arrays(loaded).items():
        assert array.dtype == arrays[name].dtype and array.tobytes() == arrays[name].tobytes(), name  # bit for bit
    assert arrays.keys() == _arrays(loaded).keys()
    # Files written before compression (np.savez, then the metadata appended) still load.
    old = tmp_path / "old.npz"
    np.savez(old, **{name if name in FIELDS else f"extra__{name}": array for name, array in arrays.items()})
    with zipfile.ZipFile(old, "a") as archive:
        archive.writestr("metadata.json", json.dumps(original.metadata))
    assert Trajectory.load(old) == original


def test_equality_ignores_exactly_the_timing_keys():
    assert TIMING_KEYS == ("wall_time", "setup_time_s", "timings_s")
    a = _trajectory()
    b = copy.deepcopy(a)
    b.metadata["wall_time"] = 99.0
    b.metadata["info"]["setup_time_s"] = 7.0
    b.metadata["info"]["timings_s"] = {"steps": 3.5}  # the Adam-like limit's phases
    assert a == b
    b.metadata["info"]["samples"] = 3  # any other metadata counts
    assert a != b
    c = copy.deepcopy(a)
    c.test_predictions[1, 0, 0, 0] += 1e-6
    assert a != c
    d = copy.deepcopy(a)
    d.train_loss = d.train_loss.astype(np.float32)  # same values, other dtype
    assert a != d


def test_two_identical_solves_compare_equal():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3))
    problem = Problem(x[:6], x[:6, :1], x[6:], x[6:, :1])
    runs = [iw.solve(problem, iw.mlp(1), optimizer=optim.sgd(0.5), width=math.inf, steps=2, progress=False) for _ in range(2)]
    assert runs[0].metadata["wall_time"] != runs[1].metadata["wall_time"]
    assert runs[0] == runs[1]


def _rewrite(path, out, drop=(), replace=None):
    """Copy the zip ``path`` to ``out`` without the members ``drop``, with ``replace`` = {member: bytes}."""
    replace = replace or {}
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename not in drop:
                target.writestr(info, replace.get(info.filename, source.read(info)))


def test_unreadable_files_raise_one_error_naming_the_path_and_the_problem(tmp_path):
    good = _trajectory().save(tmp_path / "good")
    raw = open(good, "rb").read()
    broken = {}

    def write(name, data):
        broken[name] = tmp_path / name
        broken[name].write_bytes(data)

    write("empty.npz", b"")
    write("truncated.npz", raw[: len(raw) // 2])
    flipped = bytearray(raw)
    for i in range(60, 90):  # inside the first member's compressed data
        flipped[i] ^= 0xFF
    write("flipped.npz", bytes(flipped))
    for name, drop, replace in (
        ("partial.npz", ("diverged.npy",), None),
        ("no_metadata.npz", ("metadata.json",), None),
        ("bad_json.npz", (), {"metadata.json": b'{"regime": '}),
        ("list_json.npz", (), {"metadata.json": b"[1, 2]"}),
        ("bad_header.npz", (), {"steps.npy": b"\x93NUMPY garbage"}),
    ):
        broken[name] = tmp_path / name
        _rewrite(good, broken[name], drop, replace)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    broken["foreign.npz"] = foreign
    inconsistent = _trajectory()
    inconsistent_path = inconsistent.save(tmp_path / "inconsistent")
    _rewrite(inconsistent_path, tmp_path / "shapes.npz", replace={"steps.npy": _npy(np.arange(7))})
    broken["shapes.npz"] = tmp_path / "shapes.npz"

    expected = {
        "empty.npz": "truncated or corrupt archive",
        "truncated.npz": "truncated or corrupt archive",
        "flipped.npz": "corrupt",
        "partial.npz": r"partial file, missing the arrays \['diverged'\]",
        "no_metadata.npz": "no metadata.json member",
        "bad_json.npz": "corrupt metadata.json",
        "list_json.npz": "metadata.json holds a list",
        "bad_header.npz": "unreadable array data",
        "foreign.npz": "no metadata.json member",
        "shapes.npz": r"inconsistent arrays \(steps must have shape \(3,\)",
    }
    assert set(expected) == set(broken)
    for name, message in expected.items():
        with pytest.raises(TrajectoryFileError, match=message) as caught:
            Trajectory.load(broken[name])
        assert str(caught.value).startswith(str(broken[name])), name
        assert isinstance(caught.value, ValueError)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        Trajectory.load(tmp_path / "absent")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        Trajectory.load(3)


def _npy(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_saved_files_get_normal_permissions(tmp_path):
    trajectory = _trajectory()
    previous = os.umask(0o027)
    try:
        restricted = os.stat(trajectory.save(tmp_path / "restricted")).st_mode & 0o777
        os.umask(0o022)
        usual = os.stat(trajectory.save(tmp_path / "usual")).st_mode & 0o777
    finally:
        os.umask(previous)
    assert (restricted, usual) == (0o640, 0o644)  # 0o666 minus the umask, not mkstemp's 0o600
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(OSError, match=f"cannot save the trajectory to {tmp_path / 'a_file' / 't.npz'}"):
        trajectory.save(tmp_path / "a_file" / "t")


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def test_a_save_removes_orphan_temporaries_of_killed_saves_and_nothing_else(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    before_run = files.PROCESS_START - 60
    folder = tmp_path / "results"
    folder.mkdir()
    paths = {
        "orphan": folder / f".w8.npz.partial-{dead}-0123abcd.npz",
        "orphan_png": folder / f".plot.png.partial-{dead}-deadbeef.png",
        "live_process": folder / f".w16.npz.partial-{alive}-0123abcd.npz",
        "newer_than_run": folder / f".w32.npz.partial-{dead}-0123abcd.npz",
        "other_pattern": folder / f".w64.npz.{dead}-0123abcd.npz",
        "user_file": folder / f"notes.partial-{dead}-0123abcd.txt",
        "result": folder / "w8.npz",
    }
    for path in paths.values():
        path.write_bytes(b"x")
        os.utime(path, (before_run, before_run))
    os.utime(paths["newer_than_run"], (time.time() + 60, time.time() + 60))
    _trajectory().save(folder / "w128")
    remaining = {name for name, path in paths.items() if path.exists()}
    assert remaining == {"live_process", "newer_than_run", "other_pattern", "user_file", "result"}
    assert not list(folder.glob(".*partial*w128*")) and not list(folder.glob(".w128*"))


def test_bad_fields_are_named():
    good = _trajectory()
    fields = {name: getattr(good, name) for name in FIELDS}
    for change, error, message in (
        (dict(train_loss=np.zeros(3)), ValueError, r"train_loss must have shape \(S, R\)"),
        (dict(test_loss=np.zeros((2, 4))), ValueError, r"test_loss must have shape \(2, 3\)"),
        (dict(steps=np.arange(4)), ValueError, r"steps must have shape \(3,\)"),
        (dict(diverged=np.zeros(3)), ValueError, r"diverged must have shape \(2,\)"),
        (dict(test_predictions=np.zeros((2, 3, 4))), ValueError, "test predictions must have shape"),
        (dict(metadata=["regime"]), TypeError, "metadata must be a dict"),
        (dict(metadata={"wall_time": float("nan")}), ValueError, "metadata must be JSON-serializable"),
        (dict(extras=[1]), TypeError, "extras must be a dict"),
    ):
        with pytest.raises(error, match=message):
            Trajectory.from_arrays(**{**fields, **change})
    with pytest.raises(TypeError, match="path must be a str"):
        good.save(None)
