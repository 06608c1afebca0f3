"""The one resumable store of the experiments: results keyed by name and job fingerprint, written as each finishes.

The semantics of [`infinite_width.sweep`][infinite_width.sweep], for any
result, not only trajectories: [`Store.fetch`][infinite_width.experiments.store.Store.fetch]
runs a computation once and saves its result to ``<folder>/<name>.npz``
(atomically: a temporary file, then ``os.replace``) with the fingerprint of
the job that produced it (`infinite_width.workflow.sweeps.job_fingerprint`:
a hash of its arguments, arrays and problems by content). Run again, the
result is read back instead of recomputed; a file whose fingerprint does not
match the job of the same name (the job changed), or that cannot be read
(truncated, corrupt), is recomputed with a warning naming it. A store proves
its folder writable when it is opened (a read-only folder fails before any
work) and removes orphan temporaries of saves killed before it opened.

A result is a dict whose values are JSON values (numbers, strings, lists,
dicts, None) or numpy arrays (top-level keys only); ``fetch`` returns what was
written, read back, so a resumed run and an uninterrupted one give the same
objects.
"""

from __future__ import annotations

import json
import re
import time
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from infinite_width._src.files import atomic_path, check_writable_folder, remove_orphan_temporaries
from infinite_width.workflow.sweeps import job_fingerprint

__all__ = ["Store", "StoreFileError"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
_HEADER = "__header__"


class StoreFileError(ValueError):
    """A stored result that cannot be read (truncated, corrupt, not a store file); the message names the file."""


def _split(result: Mapping) -> tuple:
    if not isinstance(result, Mapping):
        raise TypeError(f"a stored result must be a dict, got {type(result).__name__}")
    arrays = {key: np.asarray(value) for key, value in result.items() if isinstance(value, np.ndarray)}
    fields = {key: value for key, value in result.items() if key not in arrays}
    if _HEADER in result:
        raise ValueError(f"{_HEADER!r} is reserved by the store")
    return fields, arrays


class Store:
    """Results of an experiment in ``folder``, one ``<name>.npz`` each (see the module docstring).

    Args:
      folder: the folder (created if needed).

    Raises:
      PermissionError: (or another ``OSError``) naming the folder when it cannot be written.
    """

    def __init__(self, folder):
        opened = time.time()
        self.folder = Path(check_writable_folder("folder", folder))
        remove_orphan_temporaries(self.folder, opened)

    def path(self, name: str) -> Path:
        """Where the result ``name`` is stored.

        Args:
          name: the result's name (letters, digits, ``_.=+-``).
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"result name {name!r} is not a safe file name (letters, digits and _.=+- only)")
        return self.folder / f"{name}.npz"

    def read(self, name: str) -> tuple:
        """``(fingerprint, result)`` stored under ``name``.

        Args:
          name: the result's name.

        Raises:
          FileNotFoundError: nothing is stored under ``name``.
          StoreFileError: the file cannot be read.
        """
        path = self.path(name)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no stored result")
        try:
            with np.load(path, allow_pickle=False) as stored:
                header = json.loads(str(stored[_HEADER]))
                arrays = {key: stored[key] for key in stored.files if key != _HEADER}
            return header["fingerprint"], {**header["fields"], **arrays}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, TypeError) as error:
            raise StoreFileError(f"{path}: not a readable stored result ({type(error).__name__}: {error})") from error

    def write(self, name: str, job: Mapping, result: Mapping) -> dict:
        """Store ``result`` of ``job`` under ``name`` (atomically); return it as read back.

        Args:
          name: the result's name.
          job: what determines the result (its fingerprint is stored with it).
          result: the result (a dict, see the module docstring).
        """
        fields, arrays = _split(result)
        header = json.dumps({"fingerprint": job_fingerprint(job), "fields": fields}, allow_nan=True)
        with atomic_path(self.path(name), suffix=".npz") as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, **{_HEADER: np.array(header)}, **arrays)
        return self.read(name)[1]

    def load(self, name: str, job: Mapping) -> Optional[dict]:
        """The result of ``job`` stored under ``name``, or None (missing, another job's, unreadable: warned).

        Args:
          name: the result's name.
          job: the job it must be the result of.
        """
        path = self.path(name)
        if not path.exists():
            return None
        try:
            fingerprint, result = self.read(name)
        except StoreFileError as error:
            warnings.warn(f"{error}; recomputing {name!r}", stacklevel=3)
            return None
        if fingerprint != job_fingerprint(job):
            warnings.warn(f"{path} holds a different job than {name!r} now describes; recomputing it", stacklevel=3)
            return None
        return result

    def fetch(self, name: str, job: Mapping, compute: Callable[[], Mapping], *, finished_only: bool = False
              ) -> Optional[dict]:
        """The result of ``job``: read back if stored, else ``compute()``, stored and returned (as read back).

        Args:
          name: the file name of the result (letters, digits, ``_.=+-``).
          job: what determines the result (a dict of JSON values, arrays,
            problems, frozen dataclasses): its fingerprint is stored with it.
          compute: computes the result (a dict, see the module docstring).
          finished_only: compute nothing: None when the result is not stored.
        """
        stored = self.load(name, job)
        if stored is not None or finished_only:
            return stored
        return self.write(name, job, compute())

