"""RL tests run on one intra-op thread: tiny matmuls gain nothing from more (see
tests/train/conftest.py), and subprocesses get OMP_NUM_THREADS=1 to match."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
