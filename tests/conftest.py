"""Shared test fixtures."""

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data files in ../shared/datasets (relative to the repo root)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data folder {SHARED_DATASETS} is absent (see shared/datasets/README.md)")
    return SHARED_DATASETS
