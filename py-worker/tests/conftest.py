import os
import sys

# as the worker's __main__ does: one BLAS/OpenMP thread (the machine is shared; tests stay lean)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EngineSide  # noqa: E402


@pytest.fixture
def engine():
    """A fresh worker connected to a fake engine (for tests that kill or break it)."""
    e = EngineSide()
    e.accept()
    yield e
    e.close()


@pytest.fixture(scope="session")
def shared_engine():
    """One long-lived worker shared by tests that leave it healthy."""
    e = EngineSide(worker_id=7)
    e.accept()
    yield e
    e.close()
