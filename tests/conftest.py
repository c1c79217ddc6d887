"Fixtures shared by the test modules."
import os
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')

@pytest.fixture(scope='module')
def one_thread():
    "One torch thread for the module: tiny models run faster without waiting on busy cores, and tests run in parallel."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
