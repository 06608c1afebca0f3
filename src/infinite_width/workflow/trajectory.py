"""The result of one solve: predictions, losses and accuracies at recorded steps, with metadata.

Every regime of [`infinite_width.solve`][] returns a [`Trajectory`][infinite_width.Trajectory]
of the same layout, so that they can be compared, plotted and saved alike.

Shapes (``S`` seeds, ``R`` recorded steps, ``N``/``Nt`` train/test points,
``k`` outputs):

* ``steps`` (R,) int; a non-dynamical baseline (kernel ridge regression, the
  NNGP posterior) has one recorded step, ``-1``, meaning ``t = infinity``;
* ``train_predictions`` (S, R, N, k), ``test_predictions`` (S, R, Nt, k):
  one row per seed of a finite network, ``S = 1`` for every limit (for the
  Monte Carlo Adam-like limit it is the mean over samples);
* ``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy`` (S, R);
* ``diverged`` (S,) bool;
* ``train_stderr`` (R, N, k), ``test_stderr`` (R, Nt, k): Monte Carlo
  standard errors of the predictions, or None;
* ``extras``: further named arrays (e.g. ``test_variance`` (Nt, k) of the
  NNGP posterior);
* ``metadata``: a JSON-serializable dict (regime, label, architecture,
  optimizer, width, wall time, versions, device, ...).

[`Trajectory.save`][infinite_width.workflow.trajectory.Trajectory.save] writes one compressed ``.npz`` file (the arrays,
and the metadata as a ``metadata.json`` member of the same zip archive)
atomically; [`Trajectory.load`][infinite_width.workflow.trajectory.Trajectory.load] reads it back exactly, and raises
[`TrajectoryFileError`][infinite_width.workflow.TrajectoryFileError] naming the file for anything it cannot read.

``==`` compares every array (dtype and values, NaN equal to NaN) and the
metadata except the measured durations [`TIMING_KEYS`][infinite_width.workflow.TIMING_KEYS], so two
identical solves compare equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
import zlib
from typing import Dict, Optional

import numpy as np

from infinite_width._src.files import atomic_path, os_error
from infinite_width.predictions import STATIC_STEP

__all__ = ["Trajectory", "TrajectoryFileError", "STATIC_STEP", "TIMING_KEYS"]

TIMING_KEYS = ("wall_time", "setup_time_s")
"""Metadata keys holding measured durations (seconds), ignored by ``Trajectory ==`` wherever they
occur in the metadata (top level or nested dicts): ``wall_time`` (the whole solve) and
``setup_time_s`` (setup before the first step). They differ between two runs of the same solve."""

_ARRAYS = (
    "steps",
    "train_predictions",
    "test_predictions",
    "train_loss",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
    "diverged",
)
_OPTIONAL = ("train_stderr", "test_stderr")
_METADATA_MEMBER = "metadata.json"
METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")


class TrajectoryFileError(ValueError):
    """A file that [`Trajectory.load`][infinite_width.workflow.trajectory.Trajectory.load] cannot read: truncated, partial, corrupt or not a trajectory.

    The message starts with the file's path and says what is wrong.
    """


def _without_timings(value):
    if isinstance(value, dict):
        return {key: _without_timings(item) for key, item in value.items() if key not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(item) for item in value]
    return value


def _json_normalize(metadata: dict) -> dict:
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata must be JSON-serializable without NaN/Inf: {error}") from error


@dataclasses.dataclass(eq=False)
class Trajectory:
    """Predictions and metrics of one solve at its recorded steps (shapes in the module docstring)."""

    steps: np.ndarray
    train_predictions: np.ndarray
    test_predictions: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    diverged: np.ndarray
    train_stderr: Optional[np.ndarray] = None
    test_stderr: Optional[np.ndarray] = None
    extras: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.steps = np.asarray(self.steps, dtype=np.int64)
        for name in _ARRAYS[1:-1]:
            setattr(self, name, np.asarray(getattr(self, name)))
        self.diverged = np.asarray(self.diverged, dtype=bool)
        if self.train_loss.ndim != 2:
            raise ValueError(f"train_loss must have shape (S, R) (seeds, recorded steps), got {self.train_loss.shape}")
        seeds, recorded = self.train_loss.shape
        if self.steps.shape != (recorded,):
            raise ValueError(f"steps must have shape ({recorded},), got {self.steps.shape}")
        for name in ("train_predictions", "test_predictions"):
            if getattr(self, name).ndim != 4 or getattr(self, name).shape[:2] != (seeds, recorded):
                raise ValueError(f"{name} must have shape ({seeds}, {recorded}, N, k), got {getattr(self, name).shape}")
        for name in METRICS:
            if getattr(self, name).shape != (seeds, recorded):
                raise ValueError(f"{name} must have shape ({seeds}, {recorded}), got {getattr(self, name).shape}")
        if self.diverged.shape != (seeds,):
            raise ValueError(f"diverged must have shape ({seeds},), got {self.diverged.shape}")
        for name, predictions in (("train_stderr", self.train_predictions), ("test_stderr", self.test_predictions)):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                if value.shape != predictions.shape[1:]:
                    raise ValueError(f"{name} must have shape {predictions.shape[1:]}, got {value.shape}")
                setattr(self, name, value)
        if not isinstance(self.extras, dict):
            raise TypeError(f"extras must be a dict of named arrays, got {type(self.extras).__name__}")
        self.extras = {str(k): np.asarray(v) for k, v in self.extras.items()}
        if not isinstance(self.metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        self.metadata = _json_normalize(self.metadata)

    # ---- what it is -------------------------------------------------------

    @property
    def label(self) -> str:
        """Short name for tables and legends."""
        return self.metadata.get("label", self.regime)

    @property
    def regime(self) -> str:
        """``"ntk"``, ``"nngp"``, ``"adam_limit"``, ``"finite"`` or a baseline name."""
        return self.metadata.get("regime", "unknown")

    @property
    def width(self) -> float:
        """Hidden width: an int for finite networks, ``math.inf`` for limits."""
        width = self.metadata.get("width", "inf")
        return math.inf if width == "inf" else width

    @property
    def is_static(self) -> bool:
        """True for a non-dynamical baseline (one recorded step at ``t = infinity``)."""
        return self.steps.shape == (1,) and self.steps[0] == STATIC_STEP

    @property
    def seeds(self) -> int:
        return self.train_loss.shape[0]

    # ---- summaries --------------------------------------------------------

    def mean_predictions(self, split: str = "test") -> np.ndarray:
        """Predictions averaged over seeds (ignoring diverged seeds), shape (R, N, k)."""
        predictions = self.predictions(split)
        keep = ~self.diverged if not np.all(self.diverged) else np.ones_like(self.diverged)
        return predictions[keep].mean(axis=0)

    def metric(self, name: str):
        """``(mean, std)`` over non-diverged seeds of a metric, each of shape (R,)."""
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; expected one of {METRICS}")
        values = getattr(self, name)
        keep = ~self.diverged
        if not np.any(keep):
            nan = np.full(values.shape[1], np.nan)
            return nan, nan
        values = values[keep]
        return values.mean(axis=0), values.std(axis=0)

    def final(self, name: str):
        """``(mean, std)`` over seeds of a metric at the last recorded step (floats)."""
        mean, std = self.metric(name)
        return float(mean[-1]), float(std[-1])

    def at(self, step: int) -> int:
        """Index of ``step`` among the recorded steps (``ValueError`` if not recorded)."""
        where = np.nonzero(self.steps == step)[0]
        if where.size == 0:
            raise ValueError(f"step {step} was not recorded; recorded steps are {self.steps.tolist()}")
        return int(where[0])

    def predictions(self, split: str) -> np.ndarray:
        """``train_predictions`` (S, R, N, k) or ``test_predictions`` (S, R, Nt, k), by ``split`` name."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self.train_predictions if split == "train" else self.test_predictions

    def __repr__(self) -> str:
        body = ", ".join(
            f"{name}={self.final(name)[0]:.4g}" for name in ("train_loss", "test_loss", "test_accuracy")
        )
        return (
            f"Trajectory({self.label!r}, seeds={self.seeds}, steps={len(self.steps)} recorded "
            f"up to {int(self.steps[-1])}, final {body})"
        )

    # ---- equality, saving, loading ----------------------------------------

    def _arrays(self) -> Dict[str, np.ndarray]:
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        for name in _OPTIONAL:
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for name, value in self.extras.items():
            arrays[f"extra__{name}"] = value
        return arrays

    def __eq__(self, other) -> bool:
        """Same arrays (dtypes and values, NaN == NaN) and same metadata apart from [`TIMING_KEYS`][infinite_width.workflow.TIMING_KEYS]."""
        if not isinstance(other, Trajectory):
            return NotImplemented
        mine, theirs = self._arrays(), other._arrays()
        if mine.keys() != theirs.keys() or _without_timings(self.metadata) != _without_timings(other.metadata):
            return False
        return all(
            mine[k].dtype == theirs[k].dtype and np.array_equal(mine[k], theirs[k], equal_nan=True) for k in mine
        )

    __hash__ = None

    def save(self, path) -> str:
        """Write this trajectory to ``path`` (``.npz`` appended if missing), atomically; return the path.

        The arrays go into a compressed npz (lossless: ``load`` gives them
        back bit for bit), the metadata into a ``metadata.json`` member of the
        same zip archive. The file is written to a temporary name in the same
        folder and moved into place with ``os.replace``, so a reader (or a
        resumed sweep) never sees a partial file, even if the process is
        killed; orphan temporaries of killed saves are removed by later saves
        (`infinite_width._src.files`). The file gets the usual
        permissions (0o666 minus the umask). ``OSError`` naming the path if
        it cannot be written.
        """
        path = _check_path(path)
        if not path.endswith(".npz"):
            path += ".npz"
        try:
            with atomic_path(path, suffix=".npz") as temporary:
                with open(temporary, "wb") as file:
                    np.savez_compressed(file, **self._arrays())
                with zipfile.ZipFile(temporary, "a", compression=zipfile.ZIP_DEFLATED) as archive:
                    archive.writestr(_METADATA_MEMBER, json.dumps(self.metadata, indent=1, sort_keys=True))
        except OSError as error:
            raise os_error(f"cannot save the trajectory to {path}", error) from error
        return path

    @classmethod
    def load(cls, path) -> "Trajectory":
        """Read a trajectory written by [`save`][infinite_width.workflow.trajectory.Trajectory.save] (``.npz`` appended if ``path`` has no such file).

        Raises ``FileNotFoundError`` for a missing file and
        [`TrajectoryFileError`][infinite_width.workflow.TrajectoryFileError] (a ``ValueError``) naming the path for
        a truncated, partial, corrupt or foreign file.
        """
        path = _check_path(path)
        if not path.endswith(".npz") and not os.path.exists(path):
            path += ".npz"
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such trajectory file")
        try:
            with zipfile.ZipFile(path) as archive:
                if _METADATA_MEMBER not in archive.namelist():
                    raise TrajectoryFileError(f"{path}: no {_METADATA_MEMBER} member, so not a saved Trajectory")
                metadata = json.loads(archive.read(_METADATA_MEMBER))
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files if name != _METADATA_MEMBER}
        except TrajectoryFileError:
            raise
        except zipfile.BadZipFile as error:
            raise TrajectoryFileError(f"{path}: truncated or corrupt archive ({error})") from error
        except (zlib.error, EOFError) as error:
            raise TrajectoryFileError(f"{path}: corrupt compressed data ({error})") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TrajectoryFileError(f"{path}: corrupt {_METADATA_MEMBER} ({error})") from error
        except ValueError as error:
            raise TrajectoryFileError(f"{path}: unreadable array data ({error})") from error
        except OSError as error:
            if error.errno is not None:  # the file system's error (permissions, ...), which names the path
                raise
            raise TrajectoryFileError(f"{path}: unreadable array data ({error})") from error
        missing = [name for name in _ARRAYS if name not in arrays]
        if missing:
            raise TrajectoryFileError(f"{path}: partial file, missing the arrays {missing}")
        unknown = sorted(set(arrays) - set(_ARRAYS) - set(_OPTIONAL) - {n for n in arrays if n.startswith("extra__")})
        if unknown:
            raise TrajectoryFileError(f"{path}: unknown arrays {unknown}, so not a saved Trajectory")
        if not isinstance(metadata, dict):
            raise TrajectoryFileError(f"{path}: {_METADATA_MEMBER} holds a {type(metadata).__name__}, not a dict")
        extras = {name[len("extra__"):]: arrays.pop(name) for name in list(arrays) if name.startswith("extra__")}
        try:
            return cls(**arrays, extras=extras, metadata=metadata)
        except (ValueError, TypeError) as error:
            raise TrajectoryFileError(f"{path}: inconsistent arrays ({error})") from error


def _check_path(path) -> str:
    try:
        return os.fsdecode(path)
    except TypeError as error:
        raise TypeError(f"path must be a str or os.PathLike, got {path!r} of type {type(path).__name__}") from error
