"""Resumable experiment records: one JSON file per finished point, with the settings it was computed under.

A resumed run reads a point back only if it was computed with the same
settings (data checksum, seeds, options); otherwise it refuses to mix
results. `Clock` times a point: wall time, process CPU time and the
load average, since the machine may be shared.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import time
import zlib
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from infinite_width._src.files import atomic_path

__all__ = ["Clock", "problem_settings", "read_record", "write_record", "write_json", "write_csv"]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """``with Clock() as clock: ...`` then ``clock.record()``: wall and process CPU seconds (all threads), load."""

    def __enter__(self):
        self.wall, self.cpu, self.load = time.perf_counter(), _cpu_seconds(), os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        return False

    def record(self) -> Dict[str, float]:
        """``seconds``, ``cpu_seconds`` since entering, and the 1-minute load average at entry and now."""
        return {
            "seconds": time.perf_counter() - self.wall,
            "cpu_seconds": _cpu_seconds() - self.cpu,
            "load_start": self.load,
            "load_end": os.getloadavg()[0],
        }


def problem_settings(problem) -> Dict[str, object]:
    """What identifies a problem's data in a record's settings: name, sizes, input shape and a CRC32 of its arrays."""
    checksum = 0
    for array in (problem.x_train, problem.y_train, problem.x_test, problem.y_test):
        checksum = zlib.crc32(np.ascontiguousarray(array).tobytes(), checksum)
    return {
        "problem": problem.name,
        "n_train": problem.n_train,
        "n_test": problem.n_test,
        "input_shape": list(problem.x_train.shape[1:]),
        "data_crc32": checksum,
    }


def read_record(path: Path, settings: Mapping) -> Optional[dict]:
    """The result stored at ``path``, None if there is none; ``ValueError`` if it has other settings."""
    path = Path(path)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("settings") != settings:
        raise ValueError(
            f"{path} was computed with other settings ({record.get('settings')}) than this run ({settings}); "
            "use another out_dir"
        )
    return record["result"]


def write_json(path: Path, value) -> None:
    """``value`` as indented JSON at ``path``, atomically."""
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(value, indent=1))


def write_record(path: Path, settings: Mapping, result: Mapping) -> None:
    """Store ``result`` with its ``settings`` at ``path``, atomically."""
    write_json(path, {"settings": settings, "result": result})


def write_csv(path: Path, rows: Sequence[Mapping], fields: Sequence[str]) -> None:
    """Rows (dicts over ``fields``) as CSV with a header, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as temporary:
        Path(temporary).write_text(buffer.getvalue())
