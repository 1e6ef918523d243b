import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_root() -> str:
    """The offline MNIST copy next to the repository (``../shared/data``); skip when absent."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST files not found under {SHARED_DATA} (offline copy for tests)")
    return str(SHARED_DATA)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run with the working directory in a temporary folder (logs/ lands there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


import torch  # noqa: E402

# tests run tiny models: one intra-op thread avoids oversubscription when pytest shares cores
torch.set_num_threads(1)
