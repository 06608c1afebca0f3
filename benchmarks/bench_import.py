"""Start-up times: ``import infinite_width``, its first use, and ``python -m infinite_width --help``.

Each repeat starts fresh interpreters, alternating between the cases; the best
of the repeats of each is kept (the machine may be shared, and the best is
the least disturbed). Measured in the interpreter (interpreter start-up
excluded):

* ``import jax``: the floor of anything that computes;
* ``import infinite_width``: names are imported on first use, so this loads
  no jax;
* first use, ``import infinite_width; infinite_width.solve``: what a script
  pays before its first solve (jax, optax and the workflow).

Measured as wall-clock time of the whole command, beside ``python -c pass``
(the interpreter's own start-up): ``python -m infinite_width --help``, which
imports no jax. The unit tests check what keeps these light (which modules
are loaded: ``tests/test_import.py``, ``tests/test_startup.py``), not their
times.

Usage (from the repository root)::

    python benchmarks/bench_import.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

TIMED = "import time; start = time.perf_counter(); {code}; print(time.perf_counter() - start)"
IN_PROCESS = {
    "import_jax": "import jax",
    "import_infinite_width": "import infinite_width",
    "first_use": "import infinite_width; infinite_width.solve",
}
COMMANDS = {
    "python_start": ["-c", "pass"],
    "help": ["-m", "infinite_width", "--help"],
}


def _environment() -> dict:
    # The checkout's package, whether or not it is installed.
    source = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])))


def in_process_seconds(code: str) -> float:
    """Seconds to run ``code`` in a fresh interpreter (interpreter start-up excluded)."""
    result = subprocess.run([sys.executable, "-c", TIMED.format(code=code)], capture_output=True, text=True,
                            check=True, env=_environment())
    return float(result.stdout.strip().splitlines()[-1])


def command_seconds(arguments) -> float:
    """Wall-clock seconds of ``python *arguments``, interpreter start-up included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *arguments], capture_output=True, check=True, env=_environment())
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh interpreters per case (best one kept)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    times = {name: [] for name in [*IN_PROCESS, *COMMANDS]}
    for _ in range(args.repeats):
        for name, code in IN_PROCESS.items():
            times[name].append(in_process_seconds(code))
        for name, arguments in COMMANDS.items():
            times[name].append(command_seconds(arguments))
    best = {name: min(values) for name, values in times.items()}
    report = {
        **{f"{name}_s": round(value, 3) for name, value in best.items()},
        "first_use_over_jax": round(best["first_use"] / best["import_jax"], 2),
        "repeats": args.repeats,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
