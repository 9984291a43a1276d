"""The kernels' thread policy: the usable cores, the free-core estimate and its switches."""

import os
import subprocess
import sys
import threading
import time

import pytest

from fluidgrad import cli
from fluidgrad.errors import InputError
from fluidgrad.ops import compiled, cores

numba = pytest.importorskip("numba")


@pytest.mark.parametrize("used, idle, most, expected", [
    (2.0, 0.0, 2, 2),    # alone, both threads busy (or spinning)
    (1.0, 0.98, 2, 2),   # alone, one thread working, the other core idle
    (1.33, 0.0, 2, 1),   # beside one busy process: 2/3 of two cores
    (1.0, 0.0, 2, 1),    # on one thread beside one busy process
    (0.9, 0.0, 16, 1),
    (13.4, 1.0, 16, 14),  # 16 cores, 2 taken by others
    (3.0, 5.0, 4, 4),    # never more than the pool
])
def test_the_estimate_counts_our_cpu_time_and_the_idle_cores(used, idle, most, expected):
    free = cores.FreeCores(most, frozenset(range(most)), 100)
    assert free.estimate(used, idle) == expected


def test_the_estimate_reads_the_last_two_intervals(monkeypatch):
    free = cores.FreeCores(2, frozenset({0, 1}), 100)
    samples = iter([(10.0, 5.0, 1000), (10.1, 5.2, 1000), (10.2, 5.4, 1000),  # two threads busy: 2 cores
                    (10.3, 5.5, 1000), (10.4, 5.6, 1000),  # one core (the other one is taken)
                    (10.5, 5.7, 1010), (10.6, 5.8, 1020)])  # one busy, one idle: 2 again
    free.samples = [next(samples)]
    monkeypatch.setattr(free, "sample", lambda: next(samples))
    # windows: 2.0, 2.0, 1.5 (half the window taken), 1.0, 1.0 + 0.5 idle, 1.0 + 1.0 idle
    assert [free.update() for _ in range(6)] == [2, 2, 1, 1, 1, 2]
    assert free.next == pytest.approx(10.6 + cores.INTERVAL)


def test_a_cgroup_quota_caps_the_usable_cores(monkeypatch):
    files = {"/proc/self/cgroup": "0::/job\n", "/sys/fs/cgroup/job/cpu.max": "150000 100000\n"}
    monkeypatch.setattr(cores, "_read", files.get)
    assert cores.cgroup_quota() == 1.5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert cores.usable_cores() == 2
    files["/sys/fs/cgroup/job/cpu.max"] = "max 100000\n"
    assert cores.cgroup_quota() is None and cores.usable_cores() == 4
    files.update({"/proc/self/cgroup": "4:cpu:/\n", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "100000\n",
                  "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"})
    assert cores.cgroup_quota() == 1.0 and cores.usable_cores() == 1


def test_the_estimate_gives_up_cores_that_another_process_takes():
    """A real measurement: with a busy process on every core this process may use, the
    estimate is one thread (a join would wait for a thread the scheduler gave away)."""
    n = cores.usable_cores()
    if n < 2 or cores.FreeCores.create(n) is None:
        pytest.skip("needs two cores and /proc/stat")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)
        free = cores.FreeCores.create(n)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:  # this process works on one thread, as a kernel would
            pass
        assert free.update() == 1
    finally:
        for p in busy:
            p.kill()
            p.wait()


@pytest.fixture
def restore_threads():
    yield
    compiled.set_threads(os.environ["FLUIDGRAD_THREADS"])


def test_set_threads_fixes_the_count_and_auto_adapts_again(restore_threads):
    most = numba.config.NUMBA_NUM_THREADS
    assert compiled.set_threads(1) == 1 and compiled.threads() == 1 and numba.get_num_threads() == 1
    assert compiled._threads["free"] is None
    assert compiled.set_threads(10 ** 6) == most
    n = compiled.set_threads("auto")
    assert 1 <= n <= most and (compiled._threads["free"] is not None or most == 1)
    compiled.set_threads(1)
    seen = []
    worker = threading.Thread(target=lambda: seen.append((compiled.threads(), numba.get_num_threads())))
    worker.start()
    worker.join()
    assert seen == [(1, 1)]  # numba's count is per thread: fluidgrad tells each thread that runs kernels


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_one_line_bad_input(text, monkeypatch, capsys, tmp_path):
    with pytest.raises(InputError, match="expected a positive number of threads or 'auto'"):
        compiled.requested_threads(text, "--threads")
    assert cli.main(["run", "lid_cavity", "--threads", text, "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err == f"fluidgrad: --threads={text!r}: expected a positive number of threads or 'auto'\n"
    monkeypatch.setenv("FLUIDGRAD_THREADS", text)
    assert cli.main(["run", "lid_cavity", "--out", str(tmp_path / "b")]) == 2
    assert "FLUIDGRAD_THREADS" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_threads_flag_runs_the_kernels_on_that_many(restore_threads, tmp_path):
    assert cli.main(["run", "lid_cavity", "--steps", "2", "--set", "grid.resolution=[8,8]", "--set",
                     "output.video=null", "--threads", "1", "--quiet", "--out", str(tmp_path)]) == 0
    assert compiled.threads() == 1


def test_compilation_is_seen_and_timed_and_cache_loads_are_not():
    @numba.njit
    def twice(x):
        return 2 * x

    started = []
    with compiled.watch_compilation(lambda name, done: started.append((name, done))) as record:
        assert twice(3) == 6
        assert twice(4) == 8  # compiled once
    assert record["kernels"] == ["twice"] and started == [("twice", 0)] and record["seconds"] > 0
    with compiled.watch_compilation() as again:
        twice(5)
    assert again == {"seconds": 0.0, "kernels": []}


def test_a_summary_counts_compilation_apart(monkeypatch):
    monkeypatch.setattr(cli, "compile_seconds", lambda: 12.34)
    assert cli._compile_note() == " (+12.3 s compiling kernels, once)"
    monkeypatch.setattr(cli, "compile_seconds", lambda: 0.0)
    assert cli._compile_note() == ""
