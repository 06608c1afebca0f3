"""Resumable sweeps: kill one midway and resume; unreadable results recomputed; bad jobs and read-only folders refused up front."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from infinite_width.workflow import job_fingerprint, sweep, width_jobs

# A sweep of finite widths (slow enough to be killed between jobs) and one limit.
SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import infinite_width as iw
    from infinite_width import optim
    from infinite_width.problem import Problem
    from infinite_width.workflow import sweep, width_jobs

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    y = np.tanh(x[:, :1])
    problem = Problem(x[:20], y[:20], x[20:], y[20:])
    arch = iw.mlp(1, out_dim=1)
    jobs = width_jobs([8, 16, 32, 64, 128, float("inf")], name="w", problem=problem, arch=arch,
                      optimizer=optim.sgd(1.0), steps=200, seeds=2, key=3)
    sweep(jobs, sys.argv[1], progress=False)
    """
)


def _run(out_dir):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(out_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_killed_sweep_resumes_without_recomputing(tmp_path):
    import numpy as np

    from infinite_width.workflow import Trajectory

    names = ["w8", "w16", "w32", "w64", "w128", "winf"]
    interrupted = tmp_path / "interrupted"
    process = _run(interrupted)
    deadline = time.time() + 240
    while not (interrupted / "w8.npz").exists():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.time() < deadline, "the sweep wrote no result in time"
        time.sleep(0.05)
    process.kill()
    process.wait()
    done = sorted(p.name for p in interrupted.glob("*.npz"))
    assert "w8.npz" in done and len(done) < len(names), done  # killed midway
    for name in done:
        Trajectory.load(interrupted / name)  # every finished file is complete
    before = {name: os.stat(interrupted / name).st_mtime_ns for name in done}

    resumed = _run(interrupted)
    assert resumed.wait(timeout=400) == 0, resumed.stdout.read().decode()
    for name in done:  # finished jobs were loaded, not recomputed
        assert os.stat(interrupted / name).st_mtime_ns == before[name]

    fresh = tmp_path / "fresh"
    uninterrupted = _run(fresh)
    assert uninterrupted.wait(timeout=400) == 0, uninterrupted.stdout.read().decode()
    for name in names:
        a, b = Trajectory.load(interrupted / f"{name}.npz"), Trajectory.load(fresh / f"{name}.npz")
        for field in ("steps", "train_predictions", "test_predictions", "test_loss", "diverged"):
            assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True), (name, field)
        assert a.metadata["job"] == b.metadata["job"]


def test_sweep_returns_loaded_results_and_recomputes_changed_jobs(tmp_path):
    import numpy as np

    import infinite_width as iw
    from infinite_width import optim
    from infinite_width.problem import Problem

    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3))
    problem = Problem(x[:8], x[:8, :1], x[8:], x[8:, :1])
    arch = iw.mlp(1, out_dim=1)
    jobs = {"ntk": dict(problem=problem, arch=arch, optimizer=optim.sgd(1.0), width=float("inf"), steps=5),
            "ridge": dict(problem=problem, arch=arch, method=iw.KernelRidge("ntk"))}
    first = sweep(jobs, tmp_path, progress=False)
    assert list(first) == ["ntk", "ridge"] and first["ntk"].metadata["job_name"] == "ntk"
    mtime = os.stat(tmp_path / "ntk.npz").st_mtime_ns
    second = sweep(jobs, tmp_path, progress=False)
    assert second["ntk"] == first["ntk"] and os.stat(tmp_path / "ntk.npz").st_mtime_ns == mtime
    jobs["ntk"] = dict(jobs["ntk"], steps=6)
    with pytest.warns(UserWarning, match="different job"):
        third = sweep(jobs, tmp_path, progress=False)
    assert third["ntk"].steps[-1] == 6
    # the fingerprint sees array contents, not just shapes
    other = Problem(x[:8] + 1, x[:8, :1], x[8:], x[8:, :1])
    assert job_fingerprint(dict(jobs["ntk"], problem=other)) != job_fingerprint(jobs["ntk"])
    assert set(width_jobs([4, float("inf")], arch=arch)) == {"w4", "winf"}
    assert width_jobs([4, float("inf")], seeds=3) == {"w4": {"method": iw.Finite(4, seeds=3)},
                                                      "winf": {"width": float("inf")}}
    # a changed method option is a changed job
    assert job_fingerprint(dict(jobs["ridge"], method=iw.KernelRidge("ntk", ridge=1e-3))) != job_fingerprint(
        jobs["ridge"])


def test_bad_sweep_jobs_are_named(tmp_path):
    with pytest.raises(ValueError, match="safe file name"):
        sweep({"../escape": {}}, tmp_path)
    with pytest.raises(TypeError, match="dict of solve arguments"):
        sweep({"a": 3}, tmp_path)
    with pytest.raises(TypeError, match="mapping"):
        sweep([{}], tmp_path)


def _tiny_jobs():
    import numpy as np

    import infinite_width as iw
    from infinite_width import optim
    from infinite_width.problem import Problem

    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 3))
    problem = Problem(x[:6], x[:6, :1], x[6:], x[6:, :1])
    return {"a": dict(problem=problem, arch=iw.mlp(1), optimizer=optim.sgd(0.5), width=4, steps=2),
            "b": dict(problem=problem, arch=iw.mlp(1), optimizer=optim.sgd(0.5), width=4, steps=3)}


def test_sweep_recomputes_unreadable_files_and_removes_orphan_temporaries(tmp_path):
    jobs = _tiny_jobs()
    first = sweep(jobs, tmp_path, progress=False)
    truncated = tmp_path / "a.npz"
    truncated.write_bytes(truncated.read_bytes()[:100])  # a file cut short (full disk, copy interrupted)
    untouched = os.stat(tmp_path / "b.npz").st_mtime_ns
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True).stdout)
    orphan = tmp_path / f".b.npz.partial-{dead_pid}-0123abcd.npz"  # left by a save that was killed
    orphan.write_bytes(b"partial")
    os.utime(orphan, (time.time() - 60, time.time() - 60))
    with pytest.warns(UserWarning, match=rf"{truncated}: truncated or corrupt archive.*recomputing job 'a'"):
        second = sweep(jobs, tmp_path, progress=False)
    assert second == first  # recomputed bit for bit (timings aside), and loaded again
    assert os.stat(tmp_path / "b.npz").st_mtime_ns == untouched
    assert not orphan.exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write to, not even root (chattr +i then), or a skip where that cannot be made."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    else:
        folder.chmod(0o555)
        made = True
    try:
        (folder / "probe").write_bytes(b"")
        writable = True
    except OSError:
        writable = False
    if not made or writable:
        pytest.skip("cannot make a read-only folder here (root without chattr support)")
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_sweep_into_a_read_only_folder_fails_before_the_first_job(read_only_folder, monkeypatch):
    from infinite_width.workflow import sweeps

    solved = []
    monkeypatch.setattr(sweeps, "solve", lambda **job: solved.append(job))
    with pytest.raises(PermissionError, match=f"out_dir '{read_only_folder}' cannot be written to"):
        sweeps.sweep(_tiny_jobs(), read_only_folder, progress=False)
    assert solved == []


def test_sweep_checks_every_job_before_running_any(tmp_path):
    jobs = _tiny_jobs()
    jobs["b"] = dict(jobs["b"], widht=8)  # a typo in the last job
    with pytest.raises(TypeError, match="job 'b' is not a valid set of solve arguments.*widht"):
        sweep(jobs, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="out_dir must be a folder path"):
        sweep({}, None)


def _solves_nothing(monkeypatch):
    from infinite_width.workflow import sweeps

    solved = []
    monkeypatch.setattr(sweeps, "solve", lambda **job: solved.append(job))
    return solved


def test_a_bad_value_in_the_last_job_fails_before_the_first_runs(tmp_path, monkeypatch):
    import infinite_width as iw
    from infinite_width import optim

    solved = _solves_nothing(monkeypatch)
    for change, error, message in (
        (dict(steps=-1), ValueError, "job 'b': steps must be an integer >= 0"),
        (dict(key=2**64), ValueError, r"job 'b': key must be an int seed in \[0, 2\*\*64\)"),
        (dict(width=None, method=iw.KernelDynamics(), optimizer=optim.adam(0.1)), ValueError,
         "job 'b': KernelDynamics is the limit of sgd and momentum"),
        (dict(batch_size=2, steps=10**9), MemoryError, "job 'b': the minibatch order"),
    ):
        jobs = _tiny_jobs()
        jobs["b"] = dict(jobs["b"], **change)
        with pytest.raises(error, match=message):
            sweep(jobs, tmp_path / "out", progress=False)
    assert solved == [] and not (tmp_path / "out").exists()


def test_a_file_name_that_cannot_be_saved_fails_before_the_first_job(tmp_path, monkeypatch):
    """A 300-character job name once failed with OSError only after its job had been computed."""
    solved = _solves_nothing(monkeypatch)
    jobs = _tiny_jobs()
    long_name = "w" * 300
    jobs[long_name] = jobs.pop("b")
    with pytest.raises(OSError, match=f"the result of job '{long_name}' cannot be saved as .*{long_name}.npz"):
        sweep(jobs, tmp_path, progress=False)
    (tmp_path / "b.npz").mkdir()  # a folder where a result goes (it once raised a bare FileNotFoundError)
    with pytest.raises(OSError, match="the result of job 'b' cannot be saved as .*b.npz: a folder is in the way"):
        sweep(_tiny_jobs(), tmp_path, progress=False)
    assert solved == [] and sorted(p.name for p in tmp_path.iterdir()) == ["b.npz"]


def test_width_jobs_take_integral_widths_once_and_name_bad_ones():
    import math

    import numpy as np

    import infinite_width as iw

    jobs = width_jobs([8, 16.0, np.int64(32), np.float64(64.0), math.inf], seeds=2)
    assert list(jobs) == ["w8", "w16", "w32", "w64", "winf"]
    assert jobs["w16"]["method"] == iw.Finite(16, seeds=2) and jobs["winf"] == {"width": math.inf}
    for widths, error, message in (
        ([64.7], ValueError, "integers >= 1 or math.inf, got 64.7"),  # once truncated to 64
        ([float("nan")], ValueError, "integers >= 1 or math.inf, got nan"),  # once "cannot convert float NaN"
        ([64, 64.0], ValueError, r"widths holds 64 twice \(job 'w64'\)"),  # once collapsed silently
        ([0], ValueError, "got 0"), ([-math.inf], ValueError, "got -inf"),
        (["64"], TypeError, "got '64' of type str"), ([True], TypeError, "got True"),
    ):
        with pytest.raises(error, match=message):
            width_jobs(widths)
    with pytest.raises(TypeError, match="name must be a string"):
        width_jobs([8], name=3)
