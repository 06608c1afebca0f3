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

Before the first job the sweep proves that ``out_dir`` is writable (a
read-only folder fails at once, not after an hour of computing) and removes
orphan temporary files left there by saves that were killed before this
sweep started (`infinite_width._src.files`).
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
import tqdm

from infinite_width._src.files import check_writable_folder, remove_orphan_temporaries
from infinite_width.problem import Problem
from infinite_width.workflow.methods import Finite
from infinite_width.workflow.solver import solve
from infinite_width.workflow.trajectory import Trajectory, TrajectoryFileError

__all__ = ["sweep", "width_jobs", "job_fingerprint"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


def _describe(value):
    if isinstance(value, Problem):
        digest = hashlib.sha256()
        for array in (value.x_train, value.y_train, value.x_test, value.y_test):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return {"problem": digest.hexdigest(), "loss": value.loss}
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
    """A hash of a job's [`solve`][infinite_width.solve] arguments (arrays by content), stable across runs."""
    text = json.dumps({k: _describe(v) for k, v in sorted(job.items()) if k != "progress"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def width_jobs(widths, name: str = "w", *, seeds: int = 1, **solve_arguments) -> Dict[str, dict]:
    """One job per width, named ``f"{name}{width}"`` (``math.inf``: ``{name}inf``), with ``solve_arguments``.

    An integer width solves ``Finite(width, seeds=seeds)``; ``math.inf`` the
    limit of the optimizer (the ``width=math.inf`` shortcut of [`solve`][infinite_width.solve]).
    """
    return {
        f"{name}{'inf' if w == math.inf else int(w)}": {
            **solve_arguments, **({"width": w} if w == math.inf else {"method": Finite(int(w), seeds=seeds)})
        }
        for w in widths
    }


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
      TypeError: a job or job name of the wrong kind (named), before any job runs.
      ValueError: a bad job or job name (named), before any job runs.
      OSError: ``PermissionError`` (or another ``OSError``) naming ``out_dir``
        when it cannot be written, before any job runs.
    """
    started = time.time()
    if not isinstance(jobs, Mapping):
        raise TypeError(f"jobs must be a mapping of names to solve arguments, got {type(jobs).__name__}")
    for name, job in jobs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"job name {name!r} is not a safe file name (letters, digits and _.=+- only)")
        if not isinstance(job, Mapping):
            raise TypeError(f"job {name!r} must be a dict of solve arguments, got {type(job).__name__}")
        try:  # unknown or missing arguments fail now, not after the jobs before this one have run
            inspect.signature(solve).bind(**job)
        except TypeError as error:
            raise TypeError(f"job {name!r} is not a valid set of solve arguments: {error}") from error
    out_dir = check_writable_folder("out_dir", out_dir)
    remove_orphan_temporaries(out_dir, started)
    results = {}
    bar = tqdm.tqdm(jobs.items(), desc="sweep", unit="job", disable=not progress)
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
