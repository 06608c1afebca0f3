"""Experiment bookkeeping: `Clock` times a point (wall time, process CPU time and the load average,
since the machine may be shared); JSON and CSV summaries are written atomically.

The resumable store of the experiments' results is `infinite_width.experiments.store`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import time
from pathlib import Path
from typing import Dict, Mapping, Sequence

from infinite_width._src.files import atomic_path

__all__ = ["Clock", "write_json", "write_csv"]


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


def write_json(path: Path, value) -> None:
    """``value`` as indented JSON at ``path``, atomically."""
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(value, indent=1))


def write_csv(path: Path, rows: Sequence[Mapping], fields: Sequence[str]) -> None:
    """Rows (dicts over ``fields``) as CSV with a header, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as temporary:
        Path(temporary).write_text(buffer.getvalue())
