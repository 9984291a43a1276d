import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# The kernels' thread count adapts to the free cores (fluidgrad.ops.cores) unless fixed;
# tests compare results across calls, so they fix it: this worker's share of the cores.
# (Every core in each of the pytest-xdist workers oversubscribed them: a fork-join kernel
# then waits at each join for a descheduled thread, and a 32² optimization took 42 s
# instead of 1.3 s.)
import os  # noqa: E402

# (A worker inherits the controller's environment: the count set there is recomputed,
# one a user set is kept.)
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
os.environ.setdefault("NUMBA_NUM_THREADS", str(_cores))  # the pool: every core, for the every_core tests
if os.environ.get("FLUIDGRAD_THREADS") in (None, os.environ.get("_FLUIDGRAD_TEST_THREADS")):
    os.environ["FLUIDGRAD_THREADS"] = os.environ["_FLUIDGRAD_TEST_THREADS"] = str(
        max(1, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


def _has_gpu():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs cupy and an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def copied(tmp_path):
    """smoke_target and fit_buoyancy copied with their data files to tmp/s/ (relative paths inside)."""
    import shutil
    from fluidgrad.scenario import bundled_dir
    folder = tmp_path / "s"
    folder.mkdir()
    for name in ("smoke_target.yaml", "smoke_target.png", "fit_buoyancy.yaml", "fit_buoyancy_observed.npz"):
        shutil.copy(str(bundled_dir() / name), folder / name)
    return folder


@pytest.fixture
def every_core():
    """The kernels on every core of the pool for this test (a parallel kernel's test that
    must see several threads race), then this worker's share again."""
    import numba
    from fluidgrad.ops import compiled
    compiled.set_threads(numba.config.NUMBA_NUM_THREADS)
    yield numba.config.NUMBA_NUM_THREADS
    compiled.set_threads(os.environ["FLUIDGRAD_THREADS"])
