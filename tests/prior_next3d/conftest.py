"""One intra-op thread for the prior tests: tiny networks run thousands of small ops, where waking a
second thread costs more than it saves (and on a shared 2-core machine it waits for the other core)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
