import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MIMIC3_DEMO = SHARED_DATA / "mimic-iii-demo"
MIMIC4_DEMO = SHARED_DATA / "mimic-iv-demo"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

needs_demo = pytest.mark.skipif(not MIMIC3_DEMO.is_dir(), reason="../shared/data (open MIMIC demos) not present")


@pytest.fixture(scope="session")
def small_cohort():
    from ehrlib.data import simulate

    return simulate(400, seed=1)
