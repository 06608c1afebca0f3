"""Shared test fixtures, and one jax compilation cache for the test sessions of this checkout."""

import io
import os
import sys
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data files in ../shared/datasets (relative to the repo root)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data folder {SHARED_DATASETS} is absent (see shared/datasets/README.md)")
    return SHARED_DATASETS


# Most of the suite's time is XLA compilation, and the same programs are compiled again by every xdist
# worker, every subprocess (the demo, the paper-figure scripts) and every later run of the suite. jax's
# persistent cache keys an executable by the computation itself, its compile options and the jax/jaxlib
# versions, so a hit is the program that would have been compiled: one directory in the checkout, kept
# between runs, makes a second run of the suite about 3x faster (docs/BENCHMARKS.md, "The test suite").
# Its sub-folder is named after the machine's CPU features and the versions, so that a checkout on a shared
# disk never loads code compiled for another processor. jax's own size cap is not used: with it, every
# write reads every entry's access time under a file lock (O(entries) per write; the suite writes ~6,000
# entries, and a first run took 1.6x longer), so the oldest entries are pruned once per session instead.
CACHE_ROOT = Path(__file__).resolve().parents[1] / ".jax-test-cache"
CACHE_MAX_BYTES = 2**30
_CACHE_SETTINGS = {  # environment variable: (value, type of the jax option), for every setting but the directory
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": ("0", float),  # default 1 s: most test programs compile faster
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": ("0", int),
}
_CONFIGURED = "INFINITE_WIDTH_TEST_CACHE_CONFIGURED"


def cache_directory() -> Path:
    """``CACHE_ROOT / <tag>``: the tag hashes the CPU's features, the platform and the jax/jaxlib versions."""
    import hashlib
    import platform
    from importlib.metadata import version

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    described = "|".join([platform.machine(), platform.processor(), flags.strip(), version("jax"), version("jaxlib")])
    return CACHE_ROOT / hashlib.sha256(described.encode()).hexdigest()[:16]


def prune(directory: Path, max_bytes: int = CACHE_MAX_BYTES) -> list:
    """Delete the oldest written entries of ``directory`` until it holds at most half of ``max_bytes``,
    if it holds more than ``max_bytes``; the deleted paths."""
    stats = ((path, path.stat()) for path in directory.iterdir() if path.is_file())
    entries = sorted((stat.st_mtime_ns, stat.st_size, path) for path, stat in stats)
    total = sum(size for _, size, _ in entries)
    deleted = []
    if total <= max_bytes:
        return deleted
    for _, size, path in entries:
        if total <= max_bytes // 2:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted


def pytest_configure(config):
    """Point jax (here, in xdist workers and in subprocesses, which inherit the environment) at one cache.

    ``INFINITE_WIDTH_TEST_COMPILATION_CACHE=0`` runs without it (to rule it out), and
    ``INFINITE_WIDTH_TEST_COMPILATION_CACHE=DIR`` uses DIR instead (an empty DIR times a first run).
    """
    choice = os.environ.get("INFINITE_WIDTH_TEST_COMPILATION_CACHE")
    if choice == "0":
        return
    if os.environ.get(_CONFIGURED) is None:  # the controlling process; workers inherit its environment
        directory = Path(choice) if choice else cache_directory()
        directory.mkdir(parents=True, exist_ok=True)
        prune(directory)
        os.environ[_CONFIGURED] = "1"
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(directory)
        os.environ.update({name: value for name, (value, _) in _CACHE_SETTINGS.items()})
    if "jax" in sys.modules:  # imported before this hook: its configuration has read the environment already
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        for name, (_, kind) in _CACHE_SETTINGS.items():
            jax.config.update(name.lower(), kind(os.environ[name]))


class TerminalStream(io.StringIO):
    """A text stream that says it is a terminal, so progress bars draw into it.

    Install it inside the test (``contextlib.redirect_stderr(TerminalStream())``): pytest's own
    capture sets ``sys.stderr`` again between a fixture's setup and the test's call.
    """

    def isatty(self):
        return True


def pytest_collection_modifyitems(config, items):
    """Modules holding slow tests run first (each module kept whole, so module fixtures are built once).

    Under pytest-xdist (the README's ``-n 2``) the long tests then start early instead of keeping one
    worker busy alone at the end of the run.
    """
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)
