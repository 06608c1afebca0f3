"""Shared test fixtures, and one jax compilation cache for the whole test session."""

import io
import os
import shutil
import sys
import tempfile
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
# worker and every subprocess (the demo, the paper-figure scripts) and by new jit wrappers of the same
# computation. jax's persistent cache keys an executable by the computation itself, its compile options
# and the jax/jaxlib versions, so a hit is the program that would have been compiled; the directory is
# new for every session and removed after it, so nothing from another checkout or jax can be read.
_CACHE_SETTINGS = {  # environment variable: (value, type of the jax option), for every setting but the directory
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": ("0", float),  # default 1 s: most test programs compile faster
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": ("0", int),
}
_SESSION_CACHE_OWNER = "INFINITE_WIDTH_TEST_CACHE_OWNER"


def pytest_configure(config):
    """Point jax (here, in xdist workers and in subprocesses, which inherit the environment) at one cache.

    The controlling process creates the directory; workers find it in the environment they inherit.
    ``INFINITE_WIDTH_TEST_COMPILATION_CACHE=0`` runs without it (to time the suite, or to rule it out).
    """
    if os.environ.get("INFINITE_WIDTH_TEST_COMPILATION_CACHE") == "0":
        return
    if os.environ.get(_SESSION_CACHE_OWNER) is None:
        directory = tempfile.mkdtemp(prefix="infinite_width-jax-cache-")
        os.environ[_SESSION_CACHE_OWNER] = str(os.getpid())
        os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
        os.environ.update({name: value for name, (value, _) in _CACHE_SETTINGS.items()})
    if "jax" in sys.modules:  # imported before this hook: its configuration has read the environment already
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        for name, (_, kind) in _CACHE_SETTINGS.items():
            jax.config.update(name.lower(), kind(os.environ[name]))


def pytest_unconfigure(config):
    if os.environ.get(_SESSION_CACHE_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
        del os.environ[_SESSION_CACHE_OWNER]


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
