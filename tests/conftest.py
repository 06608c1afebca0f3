"""Shared test fixtures."""

import io
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data files in ../shared/datasets (relative to the repo root)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data folder {SHARED_DATASETS} is absent (see shared/datasets/README.md)")
    return SHARED_DATASETS


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
