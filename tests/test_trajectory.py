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
from pathlib import Path

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


# ------------------------------------------------------------------ a trajectory holds its predictions (issue 21)

DATA = Path(__file__).parent / "data"


def _tiny_problem():
    """The problem the files in tests/data were solved on (by the package at commit 7019cb9)."""
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
    return Problem(x[:5], y[:5], x[5:], y[5:], name="tiny")


def test_a_trajectory_holds_its_predictions_and_keeps_their_attributes():
    t = _trajectory()
    assert isinstance(t.predictions, iw.Predictions)
    assert t.train_predictions is t.predictions.train and t.test_stderr is t.predictions.test_stderr
    assert t.steps is t.predictions.steps and t.diverged is t.predictions.diverged
    assert set(t.extras) == {"test_variance"} and t.extras["test_variance"] is t.predictions.extras["test_variance"]
    with pytest.raises(TypeError):
        t.extras["other"] = np.zeros(1)  # a read-only view
    with pytest.raises(TypeError, match="predictions must be an infinite_width.Predictions"):
        Trajectory(t.train_predictions, t.train_loss, t.test_loss, t.train_accuracy, t.test_accuracy)


@pytest.mark.parametrize("name", ["adam_limit_7019cb9.npz", "posterior_7019cb9.npz"])
def test_files_written_before_the_predictions_were_wrapped_still_load(name, tmp_path):
    old = Trajectory.load(DATA / name)
    problem = _tiny_problem()
    # the arrays are where they were: the stored losses are those of the stored predictions
    for split, targets in (("train", problem.y_train), ("test", problem.y_test)):
        f = getattr(old, f"{split}_predictions").astype(np.float64)
        np.testing.assert_allclose(getattr(old, f"{split}_loss"), 0.5 * ((f - targets) ** 2).mean(axis=(2, 3)),
                                   rtol=1e-5)
    if name.startswith("adam_limit"):  # the replica metrics of the old extras are replica metrics now
        assert set(old.replica_metrics) == {f"replica_{s}_{m}" for s in ("train", "test") for m in ("loss", "accuracy")}
        assert old.replica_metrics["replica_test_loss"].shape == (2, 4) and old.test_stderr.shape == (4, 3, 2)
        assert old.predictions.extras == {}
    else:
        assert set(old.predictions.extras) == {"test_variance"} and old.replica_metrics == {}
    assert not old.diverged.any() and (old.predictions.first_nonfinite_step == -1).all()
    again = Trajectory.load(old.save(tmp_path / "again"))
    assert again == old


# -------------------------------------------------------------------------------- hostile files (issue 24)


def _posterior_file():
    return (DATA / "posterior_7019cb9.npz").read_bytes()


def test_every_single_byte_flip_is_a_file_error_naming_the_path_or_loads_the_same(tmp_path):
    """All of the file's bytes flipped one at a time: 10 + 10 + 1 of them once raised RuntimeError,
    NotImplementedError or OSError (a flipped compression method, encryption flag or offset)."""
    raw = _posterior_file()
    original = Trajectory.load(DATA / "posterior_7019cb9.npz")
    path = tmp_path / "flipped.npz"
    outcomes = {"error": 0, "equal": 0}
    for position in range(len(raw)):
        path.write_bytes(raw[:position] + bytes([raw[position] ^ 0xFF]) + raw[position + 1:])
        try:
            loaded = Trajectory.load(path)
        except TrajectoryFileError as error:
            assert str(error).startswith(str(path)), (position, error)
            outcomes["error"] += 1
        else:
            assert loaded == original, position  # a flip in an unused header field or in padding
            outcomes["equal"] += 1
    assert outcomes["error"] > len(raw) / 2  # the data are checked (CRC), not only read


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_a_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path):
    members = _members(DATA / "posterior_7019cb9.npz")
    header = bytearray(members["steps.npy"])
    lie = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.int64))
    lie["shape"] = (10**12,)
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, lie)
    members["steps.npy"] = buffer.getvalue() + bytes(header[len(buffer.getvalue()):])
    _zip(tmp_path / "huge.npz", members)
    with pytest.raises(TrajectoryFileError, match=r"huge.npz: corrupt member steps.npy: its header claims shape "
                                                  r"\(1000000000000,\)"):
        Trajectory.load(tmp_path / "huge.npz")


def test_a_file_whose_arrays_do_not_fit_is_a_memory_error_naming_it(tmp_path, monkeypatch):
    from infinite_width.workflow import trajectory

    monkeypatch.setattr(trajectory, "available_memory", lambda: 100)
    with pytest.raises(MemoryError, match=r"posterior_7019cb9.npz: its arrays take .* GiB, more than"):
        Trajectory.load(DATA / "posterior_7019cb9.npz")


def test_arrays_of_the_wrong_kind_are_refused_not_cast(tmp_path):
    members = _members(DATA / "posterior_7019cb9.npz")
    for name, array, message in (
        ("diverged", np.array(["False"]), "diverged must hold bools"),  # loaded as True before
        ("test_loss", np.array([["0.5"]]), "test_loss must hold real numbers"),
        ("train_predictions", np.ones((1, 1, 5, 2), complex), "train must hold real numbers"),
        ("first_nonfinite_step", np.array([0.5]), "first_nonfinite_step must hold integer steps"),
    ):
        _zip(tmp_path / f"{name}.npz", {**members, f"{name}.npy": _npy(array)})
        with pytest.raises(TrajectoryFileError, match=message):
            Trajectory.load(tmp_path / f"{name}.npz")
    _zip(tmp_path / "objects.npz", {**members, "steps.npy": _npy_objects()})
    with pytest.raises(TrajectoryFileError, match="holds Python objects"):
        Trajectory.load(tmp_path / "objects.npz")


def _npy_objects() -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_a_directory_in_place_of_a_file_is_a_file_error(tmp_path):
    (tmp_path / "w8.npz").mkdir()
    with pytest.raises(TrajectoryFileError, match="w8.npz: a directory, not a trajectory file"):
        Trajectory.load(tmp_path / "w8.npz")
    with pytest.raises(TrajectoryFileError, match="a directory"):
        Trajectory.load(tmp_path / "w8")  # the suffix is added, as for files


def test_identical_solves_of_every_method_compare_equal():
    """The timings (wall_time, setup_time_s, the Adam-like limit's timings_s) are left out of ==."""
    problem = _tiny_problem()
    arch = iw.mlp(1, out_dim=2)
    cases = [(iw.Finite(4, seeds=2), optim.adam(0.05), dict(batch_size=2)), (iw.Posterior(), None, {}),
             (iw.AdamLimit(samples=16, replicas=2, rank=None), optim.adam(0.05), {}),
             (iw.AdamLimit(samples=16, replicas=2, rank=None, storage_dtype="bfloat16"), optim.adam(0.05), {})]
    for method, optimizer, options in cases:  # (KernelDynamics: test_two_identical_solves_compare_equal)
        a, b = (iw.solve(problem, arch, method, optimizer, steps=3, key=4, progress=False, **options)
                for _ in range(2))
        assert a.metadata["wall_time"] != b.metadata["wall_time"]
        assert a == b, type(method).__name__
    assert a.metadata["info"]["timings_s"] != b.metadata["info"]["timings_s"]  # measured, yet ignored
