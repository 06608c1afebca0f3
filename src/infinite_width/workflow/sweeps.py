"""Resumable batches of solves: width sweeps and any other set of [`solve`][infinite_width.solve] calls.

[`sweep`][infinite_width.sweep] runs named jobs (each a dict of [`solve`][infinite_width.solve] arguments) and
writes every finished trajectory at once to ``out_dir/<name>.npz``
(atomically: temporary file, then ``os.replace``). Run again after a crash or
a kill, it loads the finished jobs instead of recomputing them and computes
the rest, so the final result is the same as an uninterrupted run's.

Each saved trajectory carries a fingerprint of its job (a hash of the
problem's arrays, the architecture, the optimizer and every other argument)
in ``metadata["job"]``; a file whose fingerprint does not match the job of
the same name (the job changed) is recomputed, with a warning, and so is a
file that cannot be read (truncated, corrupt: the warning names it).

Before the first job the sweep checks every job as [`solve`][infinite_width.solve] would
([`check_solve_arguments`][infinite_width.workflow.solver.check_solve_arguments]: a bad
argument of the last job fails at once, not after the others have run),
proves that ``out_dir`` is writable and that every job's file can be saved
there (a read-only folder, a name too long for the file system, a folder in
the way of a result), and removes orphan temporary files left there by saves
that were killed before this sweep started (`infinite_width._src.files`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
import time
import warnings
from typing import Dict, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from infinite_width._src.files import check_savable, check_writable_folder, os_error, remove_orphan_temporaries
from infinite_width._src.progress import progress_bar
from infinite_width.problem import Problem
from infinite_width.workflow.methods import Finite
from infinite_width.workflow.solver import check_solve_arguments, solve
from infinite_width.workflow.trajectory import Trajectory, TrajectoryFileError

__all__ = ["sweep", "width_jobs", "job_fingerprint"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


def _describe(value):
    if isinstance(value, Problem):
        return {"problem": value.checksums["data"], "loss": value.loss}
    if isinstance(value, np.random.Generator):  # its state before the solve draws from it
        return {"generator": _describe(value.bit_generator.state)}
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, jax.Array):
        data = jax.random.key_data(value) if jnp.issubdtype(value.dtype, jax.dtypes.prng_key) else value
        return {"array": np.asarray(data).tolist()}
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_describe(v) for v in np.asarray(value).tolist()] if isinstance(value, np.ndarray) else [
            _describe(v) for v in value
        ]
    return repr(value)  # frozen dataclasses: Architecture, Optimizer


def job_fingerprint(job: Mapping) -> str:
    """A hash of a job's [`solve`][infinite_width.solve] arguments (arrays by content), stable across runs.

    Args:
      job: the job's ``solve`` keyword arguments.
    """
    text = json.dumps({k: _describe(v) for k, v in sorted(job.items()) if k != "progress"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _job_width(width):
    """A width of [`width_jobs`][infinite_width.width_jobs]: ``math.inf``, or an integer >= 1 (an integral float such as 64.0 too)."""
    if isinstance(width, (float, np.floating)) and width == math.inf:
        return math.inf
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, (int, float, np.integer, np.floating)):
        raise TypeError(f"widths must be integers >= 1 or math.inf, got {width!r} of type {type(width).__name__}")
    if not (math.isfinite(width) and width == int(width) and width >= 1):
        raise ValueError(f"widths must be integers >= 1 or math.inf, got {width!r}")
    return int(width)


def width_jobs(widths, name: str = "w", *, seeds: int = 1, **solve_arguments) -> Dict[str, dict]:
    """One job per width, named ``f"{name}{width}"`` (``math.inf``: ``{name}inf``), with ``solve_arguments``.

    An integer width solves ``Finite(width, seeds=seeds)``; ``math.inf`` the
    limit of the optimizer (the ``width=math.inf`` shortcut of [`solve`][infinite_width.solve]).

    Args:
      widths: integers >= 1 (integral floats such as 64.0 are read as 64) or
        ``math.inf``, each once.
      name: the prefix of the job names.
      seeds: initialisations per finite width.
      **solve_arguments: the other [`solve`][infinite_width.solve] arguments, shared by every job.

    Raises:
      TypeError: a width that is not a number, a name that is not a string.
      ValueError: a width that is not an integer >= 1 or ``math.inf`` (NaN,
        64.7), or the same width twice (64 and 64.0).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r} of type {type(name).__name__}")
    jobs = {}
    for width in (_job_width(w) for w in widths):
        job_name = f"{name}{'inf' if width == math.inf else width}"
        if job_name in jobs:
            raise ValueError(f"widths holds {width} twice (job {job_name!r})")
        method = {"width": width} if width == math.inf else {"method": Finite(width, seeds=seeds)}
        jobs[job_name] = {**solve_arguments, **method}
    return jobs


def _checked_jobs(jobs: Mapping[str, Mapping]) -> None:
    """Every job's name and arguments, checked as [`solve`][infinite_width.solve] would, before any job runs."""
    if not isinstance(jobs, Mapping):
        raise TypeError(f"jobs must be a mapping of names to solve arguments, got {type(jobs).__name__}")
    for name, job in jobs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"job name {name!r} is not a safe file name (letters, digits and _.=+- only)")
        if not isinstance(job, Mapping):
            raise TypeError(f"job {name!r} must be a dict of solve arguments, got {type(job).__name__}")
        try:  # unknown or missing arguments, then every value solve checks
            inspect.signature(solve).bind(**job)
        except TypeError as error:
            raise TypeError(f"job {name!r} is not a valid set of solve arguments: {error}") from error
        try:
            check_solve_arguments(**job)
        except (TypeError, ValueError, MemoryError) as error:
            raise type(error)(f"job {name!r}: {error}") from error


def _check_savable_results(jobs: Mapping, out_dir: str) -> None:
    """Every job's result file can be written in ``out_dir`` (its name fits the file system, no folder in the way)."""
    for name in jobs:
        path = os.path.join(out_dir, f"{name}.npz")
        try:
            check_savable(path, ".npz")
        except OSError as error:
            raise os_error(f"the result of job {name!r} cannot be saved as {path}", error) from error


def sweep(jobs: Mapping[str, Mapping], out_dir, *, progress: bool = True) -> Dict[str, Trajectory]:
    """Run named solves, saving each as it finishes; skip the ones already saved.

    Args:
      jobs: ``{name: {solve keyword arguments}}`` (``problem``, ``arch``,
        ``optimizer``, ``width``, ``steps``, ...); names are file names
        (letters, digits, ``_.=+-``). Jobs run in this order.
      out_dir: folder of the results, ``<name>.npz`` each (created if needed).
      progress: a bar over jobs, and each solve's own bars (unless a job sets
        ``progress`` itself).

    Returns:
      ``{name: Trajectory}`` in job order, identical whether or not the sweep
      was interrupted and resumed.

    Raises:
      TypeError: a job or job name of the wrong kind, or an argument
        [`solve`][infinite_width.solve] refuses as such (the job named), before any job runs.
      ValueError: a bad job name or argument (the job named), before any job runs.
      MemoryError: a job's minibatch order would not fit (the job named),
        before any job runs.
      OSError: ``PermissionError`` (or another ``OSError``) naming ``out_dir``
        when it cannot be written, or naming the job whose file cannot be
        saved there (a name too long, a folder in the way), before any job runs.
    """
    started = time.time()
    _checked_jobs(jobs)
    out_dir = check_writable_folder("out_dir", out_dir)
    _check_savable_results(jobs, out_dir)
    remove_orphan_temporaries(out_dir, started)
    results = {}
    bar = progress_bar(jobs.items(), progress=progress, desc="sweep", unit="job")
    for name, job in bar:
        bar.set_postfix_str(name)
        path = os.path.join(out_dir, f"{name}.npz")
        fingerprint = job_fingerprint(job)
        if os.path.exists(path):
            try:
                saved = Trajectory.load(path)
            except TrajectoryFileError as error:
                warnings.warn(f"{error}; recomputing job {name!r}", stacklevel=2)
            else:
                if saved.metadata.get("job") == fingerprint:
                    results[name] = saved
                    continue
                warnings.warn(f"{path} holds a different job than {name!r} now describes; recomputing it",
                              stacklevel=2)
        trajectory = solve(**{"progress": progress, **job})
        trajectory.metadata["job"] = fingerprint
        trajectory.metadata["job_name"] = name
        trajectory.save(path)
        # Return what was written, so a resumed sweep (which loads) and a
        # fresh one give identical objects.
        results[name] = Trajectory.load(path)
    return results
