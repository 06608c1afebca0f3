"""The result of one solve: its predictions, losses and accuracies at recorded steps, with metadata.

Every regime of [`infinite_width.solve`][] returns a [`Trajectory`][infinite_width.Trajectory]
of the same layout, so that they can be compared, plotted and saved alike.
A trajectory holds the method's [`Predictions`][infinite_width.Predictions]
(``traj.predictions``) and what [`infinite_width.workflow.metrics`][]
computed from them.

Shapes (``S`` seeds, ``R`` recorded steps, ``N``/``Nt`` train/test points,
``k`` outputs):

* ``predictions``: the [`Predictions`][infinite_width.Predictions], whose fields
  are also attributes of the trajectory: ``steps`` (R,) int (a
  non-dynamical baseline has one recorded step, ``-1``, meaning ``t =
  infinity``), ``train_predictions`` (S, R, N, k) and ``test_predictions``
  (S, R, Nt, k) (``predictions.train``/``test``: one row per seed of a
  finite network, ``S = 1`` for every limit; for the Monte Carlo Adam-like
  limit the mean over samples), ``train_stderr`` (R, N, k) and
  ``test_stderr`` (R, Nt, k) (Monte Carlo standard errors, or None), and
  ``diverged`` (S,) bool, the verdict of the metrics (see
  [`infinite_width.workflow.metrics.diverged`][]);
* ``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy`` (S, R);
* ``replica_metrics``: the same per Monte Carlo replica of the Adam-like
  limit, ``replica_<split>_<metric>`` (R_mc, R);
* ``extras``: the predictions' named arrays (e.g. ``test_variance`` (Nt, k)
  of the NNGP posterior) and the replica metrics, in one read-only mapping;
* ``metadata``: a JSON-serializable dict (regime, label, architecture,
  optimizer, width, wall time, versions, device, ...).

[`Trajectory.save`][infinite_width.workflow.trajectory.Trajectory.save] writes one compressed ``.npz`` file (the arrays,
and the metadata as a ``metadata.json`` member of the same zip archive)
atomically; [`Trajectory.load`][infinite_width.workflow.trajectory.Trajectory.load] reads it back exactly (and reads the
files of earlier versions), and raises [`TrajectoryFileError`][infinite_width.workflow.TrajectoryFileError] naming
the file for anything it cannot read, before allocating arrays that a
corrupt header claims.

``==`` compares every array (dtype and values, NaN equal to NaN) and the
metadata except the measured durations [`TIMING_KEYS`][infinite_width.workflow.TIMING_KEYS], so two
identical solves compare equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
import types
import zipfile
import zlib
from typing import Dict, Mapping, Optional

import numpy as np

from infinite_width._src.files import atomic_path, os_error
from infinite_width._src.memory import GIB, available_memory
from infinite_width.predictions import STATIC_STEP, Predictions, bool_array

__all__ = ["Trajectory", "TrajectoryFileError", "STATIC_STEP", "TIMING_KEYS"]

TIMING_KEYS = ("wall_time", "setup_time_s", "timings_s")
"""Metadata keys holding measured durations (seconds), ignored by ``Trajectory ==`` wherever they
occur in the metadata (top level or nested dicts): ``wall_time`` (the whole solve),
``setup_time_s`` (setup before the first step) and ``timings_s`` (the Adam-like limit's phases).
They differ between two runs of the same solve."""

METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")
# The arrays of a file, in the order of `Trajectory.from_arrays`.
_ARRAYS = ("steps", "train_predictions", "test_predictions") + METRICS + ("diverged",)
_OPTIONAL = ("train_stderr", "test_stderr", "first_nonfinite_step")
_EXTRA = "extra__"
_METADATA_MEMBER = "metadata.json"
# The replica metrics' names; a file keeps them among the extras.
_REPLICA_METRIC = re.compile(r"^replica_(train|test)_(loss|accuracy)$")
# What the zip and npy readers raise for damaged bytes (a flipped bit in a header field, a bad length, ...).
_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError, NotImplementedError, struct.error,
           KeyError, IndexError, OverflowError, UnicodeDecodeError)


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


def _metric(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def _named_arrays(name: str, value) -> Dict[str, np.ndarray]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of named arrays, got {type(value).__name__}")
    return {str(key): np.asarray(item) for key, item in value.items()}


@dataclasses.dataclass(eq=False)
class Trajectory:
    """The predictions of one solve and their metrics at the recorded steps (shapes in the module docstring).

    [`from_arrays`][infinite_width.workflow.trajectory.Trajectory.from_arrays] builds one from plain arrays, the layout
    of a file.

    Attributes:
      predictions: the method's [`Predictions`][infinite_width.Predictions], with
        ``diverged`` set to the verdict of the metrics.
      train_loss: (S, R) training loss per seed and recorded step.
      test_loss: (S, R) test loss.
      train_accuracy: (S, R) training accuracy (NaN from the step a seed diverged).
      test_accuracy: (S, R) test accuracy (NaN from the step a seed diverged).
      replica_metrics: ``{"replica_<split>_<metric>": (R_mc, R)}`` of the
        Adam-like limit's Monte Carlo replicas (empty otherwise).
      metadata: a JSON-serializable dict (regime, label, architecture, optimizer, ...).
    """

    predictions: Predictions
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    replica_metrics: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.predictions, Predictions):
            raise TypeError(f"predictions must be an infinite_width.Predictions, got {type(self.predictions).__name__}")
        for name in METRICS:
            setattr(self, name, _metric(name, getattr(self, name)))
        if self.train_loss.ndim != 2:
            raise ValueError(f"train_loss must have shape (S, R) (seeds, recorded steps), got {self.train_loss.shape}")
        shape = (self.predictions.seeds, self.predictions.steps.size)
        for name in METRICS:
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape} (seeds, recorded steps), "
                                 f"got {getattr(self, name).shape}")
        self.replica_metrics = _named_arrays("replica_metrics", self.replica_metrics)
        misnamed = [name for name in self.replica_metrics if not _REPLICA_METRIC.match(name)]
        misnamed += [name for name in self.predictions.extras if _REPLICA_METRIC.match(name)]
        if misnamed:
            raise ValueError(f"replica_metrics are named replica_<train|test>_<loss|accuracy>, and only they: "
                             f"got {sorted(misnamed)} in the wrong place")
        if not isinstance(self.metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        self.metadata = _json_normalize(self.metadata)

    @classmethod
    def from_arrays(cls, steps, train_predictions, test_predictions, train_loss, test_loss, train_accuracy,
                    test_accuracy, diverged, train_stderr=None, test_stderr=None, first_nonfinite_step=None,
                    extras=None, metadata=None) -> "Trajectory":
        """A trajectory from plain arrays (shapes in the module docstring), as it is stored in a file.

        ``extras`` holds the predictions' named arrays and the replica metrics
        (``replica_<split>_<loss|accuracy>``, which go to ``replica_metrics``),
        as a file keeps them. ``metadata["info"]``
        is the predictions' ``info``.

        Args:
          steps: (R,) recorded steps; ``-1`` for a t = infinity baseline.
          train_predictions: (S, R, N, k) predictions on the training points.
          test_predictions: (S, R, Nt, k) predictions on the test points.
          train_loss: (S, R) training loss per seed and recorded step.
          test_loss: (S, R) test loss.
          train_accuracy: (S, R) training accuracy.
          test_accuracy: (S, R) test accuracy.
          diverged: (S,) True for the seeds that diverged.
          train_stderr: (R, N, k) Monte Carlo standard errors of the training predictions, or None.
          test_stderr: (R, Nt, k) Monte Carlo standard errors of the test predictions, or None.
          first_nonfinite_step: (S,) first recorded step with a non-finite prediction, -1 for none;
            None derives it from the predictions.
          extras: named arrays, the predictions' and the replica metrics.
          metadata: a JSON-serializable dict.

        Returns:
          the [`Trajectory`][infinite_width.Trajectory].

        Raises:
          TypeError: an array of the wrong kind (strings, bools where numbers
            are needed), a non-dict ``extras`` or ``metadata``.
          ValueError: inconsistent shapes, metadata that is not JSON.
        """
        extras = _named_arrays("extras", {} if extras is None else extras)
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        train_loss = _metric("train_loss", train_loss)
        steps = np.asarray(steps)
        if train_loss.ndim == 2 and steps.shape != train_loss.shape[1:]:
            raise ValueError(f"steps must have shape ({train_loss.shape[1]},) (one per recorded step), "
                             f"got {steps.shape}")
        info = metadata.get("info")
        predictions = Predictions(
            steps=steps, train=train_predictions, test=test_predictions, diverged=diverged,
            first_nonfinite_step=first_nonfinite_step, train_stderr=train_stderr, test_stderr=test_stderr,
            extras={name: value for name, value in extras.items() if not _REPLICA_METRIC.match(name)},
            info=info if isinstance(info, dict) else {},
        )
        replica_metrics = {name: value for name, value in extras.items() if _REPLICA_METRIC.match(name)}
        return cls(predictions, train_loss, test_loss, train_accuracy, test_accuracy, replica_metrics, metadata)

    # ---- the predictions' fields -------------------------------------------

    @property
    def steps(self) -> np.ndarray:
        """(R,) the recorded steps (``-1``: t = infinity)."""
        return self.predictions.steps

    @property
    def train_predictions(self) -> np.ndarray:
        """(S, R, N, k) predictions on the training points."""
        return self.predictions.train

    @property
    def test_predictions(self) -> np.ndarray:
        """(S, R, Nt, k) predictions on the test points."""
        return self.predictions.test

    @property
    def train_stderr(self) -> Optional[np.ndarray]:
        """(R, N, k) Monte Carlo standard errors of the training predictions, or None."""
        return self.predictions.train_stderr

    @property
    def test_stderr(self) -> Optional[np.ndarray]:
        """(R, Nt, k) Monte Carlo standard errors of the test predictions, or None."""
        return self.predictions.test_stderr

    @property
    def diverged(self) -> np.ndarray:
        """(S,) True for the seeds that diverged (see [`infinite_width.workflow.metrics.diverged`][])."""
        return self.predictions.diverged

    @property
    def extras(self) -> Mapping[str, np.ndarray]:
        """The predictions' named arrays and the replica metrics, read-only."""
        return types.MappingProxyType({**self.predictions.extras, **self.replica_metrics})

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
        return self.predictions.is_static

    @property
    def seeds(self) -> int:
        """S, the number of seeds (1 for a limit)."""
        return self.predictions.seeds

    # ---- summaries --------------------------------------------------------

    def mean_predictions(self, split: str = "test") -> np.ndarray:
        """Predictions averaged over seeds (ignoring diverged seeds), shape (R, N, k).

        Args:
          split: ``"train"`` or ``"test"``.
        """
        predictions = self.split_predictions(split)
        keep = ~self.diverged if not np.all(self.diverged) else np.ones_like(self.diverged)
        return predictions[keep].mean(axis=0)

    def metric(self, name: str):
        """``(mean, std)`` over non-diverged seeds of a metric, each of shape (R,).

        Args:
          name: ``"train_loss"``, ``"test_loss"``, ``"train_accuracy"`` or ``"test_accuracy"``.
        """
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
        """``(mean, std)`` over seeds of a metric at the last recorded step (floats).

        Args:
          name: a metric, as for [`metric`][infinite_width.workflow.trajectory.Trajectory.metric].
        """
        mean, std = self.metric(name)
        return float(mean[-1]), float(std[-1])

    def at(self, step: int) -> int:
        """Index of ``step`` among the recorded steps.

        Args:
          step: a recorded step.

        Raises:
          ValueError: ``step`` was not recorded.
        """
        where = np.nonzero(self.steps == step)[0]
        if where.size == 0:
            raise ValueError(f"step {step} was not recorded; recorded steps are {self.steps.tolist()}")
        return int(where[0])

    def split_predictions(self, split: str) -> np.ndarray:
        """``train_predictions`` (S, R, N, k) or ``test_predictions`` (S, R, Nt, k), by ``split`` name.

        Args:
          split: ``"train"`` or ``"test"``.
        """
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
        """The arrays of a file: those of [`from_arrays`][infinite_width.workflow.trajectory.Trajectory.from_arrays], and the extras as ``extra__<name>``."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        arrays["first_nonfinite_step"] = self.predictions.first_nonfinite_step
        for name in ("train_stderr", "test_stderr"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        arrays.update({f"{_EXTRA}{name}": value for name, value in self.extras.items()})
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
        permissions (0o666 minus the umask).

        Args:
          path: the file to write (str or os.PathLike).

        Returns:
          the path written, with its ``.npz`` suffix.

        Raises:
          OSError: naming the path if it cannot be written (a
            ``PermissionError`` for a read-only folder).
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

        Files written by earlier versions load too. Every member's header is
        checked against the bytes it holds before an array is allocated.

        Args:
          path: the file written by ``save`` (str or os.PathLike).

        Returns:
          the [`Trajectory`][infinite_width.Trajectory], equal to the one saved.

        Raises:
          FileNotFoundError: no such file.
          TrajectoryFileError: (a ``ValueError``) naming the path, for a
            directory or a truncated, partial, corrupt or foreign file.
          MemoryError: naming the path, when its arrays would not fit in memory.
        """
        path = _check_path(path)
        if not path.endswith(".npz") and not os.path.exists(path):
            path += ".npz"
        if os.path.isdir(path):
            raise TrajectoryFileError(f"{path}: a directory, not a trajectory file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such trajectory file")
        metadata, arrays = _read_archive(path)
        return _from_file(cls, path, metadata, arrays)


def _read_archive(path: str):
    """``(metadata, {name: array})`` of the zip at ``path``; a ``TrajectoryFileError`` for any damage.

    The file is opened first, so that the file system's errors (permissions)
    stay what they are; every error while reading it is damage.
    """
    with open(path, "rb") as file:
        try:
            with zipfile.ZipFile(file) as archive:
                members = {info.filename: info for info in archive.infolist()}
                if _METADATA_MEMBER not in members:
                    raise TrajectoryFileError(f"{path}: no {_METADATA_MEMBER} member, so not a saved Trajectory")
                metadata = json.loads(archive.read(_METADATA_MEMBER))
                arrays = _read_arrays(path, archive, [info for name, info in members.items()
                                                      if name != _METADATA_MEMBER])
        except (TrajectoryFileError, MemoryError):
            raise
        except zipfile.BadZipFile as error:
            raise TrajectoryFileError(f"{path}: truncated or corrupt archive ({error})") from error
        except (zlib.error, EOFError) as error:
            raise TrajectoryFileError(f"{path}: corrupt compressed data ({error})") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TrajectoryFileError(f"{path}: corrupt {_METADATA_MEMBER} ({error})") from error
        except (OSError, *_DAMAGE) as error:  # an offset beyond the file (EINVAL), a bad header field, ...
            raise TrajectoryFileError(f"{path}: corrupt archive ({type(error).__name__}: {error})") from error
    return metadata, arrays


def _member_header(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """``(shape, dtype)`` of an ``.npy`` member, checked against the bytes the member holds."""
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(stream) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(stream))
        except ValueError as error:
            raise TrajectoryFileError(f"{path}: unreadable array data ({info.filename}: {error})") from error
        header_bytes = stream.tell()
    if dtype.hasobject:
        raise TrajectoryFileError(f"{path}: {info.filename} holds Python objects, which are never loaded")
    claimed = math.prod(shape) * dtype.itemsize
    if header_bytes + claimed != info.file_size:
        raise TrajectoryFileError(
            f"{path}: corrupt member {info.filename}: its header claims shape {shape} of {dtype} "
            f"({claimed} bytes) but it holds {info.file_size - header_bytes} bytes of data"
        )
    return claimed


def _read_arrays(path: str, archive: zipfile.ZipFile, members) -> Dict[str, np.ndarray]:
    """Every ``.npy`` member as an array, after checking that the headers are consistent and fit in memory."""
    names = [info.filename for info in members]
    foreign = [name for name in names if not name.endswith(".npy")]
    if foreign:
        raise TrajectoryFileError(f"{path}: unknown members {sorted(foreign)}, so not a saved Trajectory")
    needed = sum(_member_header(path, archive, info) for info in members)
    available = available_memory()
    if needed > available:
        raise MemoryError(f"{path}: its arrays take {needed / GIB:.3g} GiB, more than the {available / GIB:.3g} GiB "
                          "of memory available")
    arrays = {}
    for info in members:
        with archive.open(info) as stream:
            arrays[info.filename[: -len(".npy")]] = np.lib.format.read_array(stream, allow_pickle=False)
    return arrays


def _from_file(cls, path: str, metadata, arrays: Dict[str, np.ndarray]) -> Trajectory:
    """The trajectory of a file's arrays, or a ``TrajectoryFileError`` saying what is missing or wrong."""
    missing = [name for name in _ARRAYS if name not in arrays]
    if missing:
        raise TrajectoryFileError(f"{path}: partial file, missing the arrays {missing}")
    prefixed = {name for name in arrays if name.startswith(_EXTRA)}
    unknown = sorted(set(arrays) - set(_ARRAYS) - set(_OPTIONAL) - prefixed)
    if unknown:
        raise TrajectoryFileError(f"{path}: unknown arrays {unknown}, so not a saved Trajectory")
    if not isinstance(metadata, dict):
        raise TrajectoryFileError(f"{path}: {_METADATA_MEMBER} holds a {type(metadata).__name__}, not a dict")
    extras = {name[len(_EXTRA):]: arrays.pop(name) for name in prefixed}
    try:
        return cls.from_arrays(**arrays, extras=extras, metadata=metadata)
    except (ValueError, TypeError) as error:
        raise TrajectoryFileError(f"{path}: inconsistent arrays ({error})") from error


def _check_path(path) -> str:
    try:
        return os.fsdecode(path)
    except TypeError as error:
        raise TypeError(f"path must be a str or os.PathLike, got {path!r} of type {type(path).__name__}") from error
