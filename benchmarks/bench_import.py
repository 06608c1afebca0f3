"""Time of ``import infinite_width`` in a fresh interpreter, beside ``import jax`` (its floor).

Each repeat starts two fresh interpreters, one importing ``jax`` (the
package cannot import faster than its main dependency) and one importing
``infinite_width``, alternately; the best of the repeats of each is kept, and
their ratio is what to compare between runs (the machine may be shared).
The unit tests check what keeps the import light (no neural-tangents,
matplotlib, TensorFlow, ... loaded: ``tests/test_import.py``), not its time.

Usage (from the repository root)::

    python benchmarks/bench_import.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

TIMED = "import time; start = time.perf_counter(); import {module}; print(time.perf_counter() - start)"


def import_seconds(module: str) -> float:
    """Seconds to import ``module`` in a fresh interpreter (interpreter start-up excluded)."""
    result = subprocess.run([sys.executable, "-c", TIMED.format(module=module)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh interpreters per module (best one kept)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    times = {"jax": [], "infinite_width": []}
    for _ in range(args.repeats):
        for module in times:
            times[module].append(import_seconds(module))
    best = {module: min(values) for module, values in times.items()}
    report = {
        "jax_s": round(best["jax"], 3),
        "infinite_width_s": round(best["infinite_width"], 3),
        "ratio": round(best["infinite_width"] / best["jax"], 2),
        "repeats": args.repeats,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
