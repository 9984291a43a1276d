"""How many CPU cores this process may use, and how many of them are free right now.

:func:`usable_cores` is what the process is allowed: its CPU affinity, capped by its
cgroup's CPU quota (a container's ``--cpus``). :class:`FreeCores` estimates, over the
last fraction of a second, how many of those cores the process could have had:

    free = (CPU time of this process + idle time of its CPUs) / wall time

A fork-join kernel on more threads than that waits at every join for a thread the
scheduler has given to another process (2-10× slower per kernel on a machine shared with
one busy process); on ``free`` threads it keeps its speed. Linux only (``/proc/stat``);
elsewhere no estimate is made.
"""

from __future__ import annotations

import math
import os
import time

INTERVAL = 0.1  # seconds between estimates
MARGIN = 0.35  # cores: free = 1.7 (clock-tick noise, a short blip of another process) still counts as 2


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by the CPU quota of its
    cgroup, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(cores, 1)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cgroup_quota():
    """CPU quota / period of this process's cgroup (v2 ``cpu.max``, v1 ``cfs_quota_us``),
    in cores; None where there is no limit or no cgroup."""
    own = (_read("/proc/self/cgroup") or "").splitlines()
    v2 = [line[3:] for line in own if line.startswith("0::")]
    for folder in {"/sys/fs/cgroup" + (v2[0] if v2 and v2[0] != "/" else ""), "/sys/fs/cgroup"}:
        fields = (_read(folder + "/cpu.max") or "").split()
        if len(fields) >= 2 and fields[0] != "max":
            try:
                return int(fields[0]) / int(fields[1])
            except (ValueError, ZeroDivisionError):
                return None
    try:
        quota = int(_read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or "-1")
        period = int(_read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or "0")
        return quota / period if quota > 0 and period > 0 else None
    except (ValueError, ZeroDivisionError):
        return None


class FreeCores:
    """The cores this process could use now (see the module docstring), between 1 and
    ``most``, re-estimated at most every :data:`INTERVAL` seconds over the last two
    intervals. :meth:`create` gives None where the idle times cannot be read."""

    def __init__(self, most, cpus, hz):
        self.most, self.cpus, self.hz = most, cpus, hz
        self.samples = [self.sample()]
        self.next = self.samples[0][0] + INTERVAL

    @classmethod
    def create(cls, most):
        try:
            cpus = frozenset(os.sched_getaffinity(0))
            hz = os.sysconf("SC_CLK_TCK")
        except (AttributeError, OSError, ValueError):
            return None
        estimate = cls(most, cpus, hz)
        return estimate if estimate.samples[0][2] is not None else None

    def idle_ticks(self):
        """Idle + iowait clock ticks of this process's CPUs since boot (None if unknown)."""
        text = _read("/proc/stat")
        if text is None:
            return None
        total = 0
        for line in text.splitlines():
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            fields = line.split()
            try:
                if int(fields[0][3:]) in self.cpus:
                    total += int(fields[4]) + int(fields[5])
            except (ValueError, IndexError):
                return None
        return total

    def sample(self):
        """``(wall, process CPU seconds, idle ticks)`` now."""
        return time.monotonic(), time.process_time(), self.idle_ticks()

    def update(self):
        """Take a sample and return the estimate over the last two intervals."""
        self.samples = self.samples[-2:] + [self.sample()]
        (w0, c0, i0), (w1, c1, i1) = self.samples[0], self.samples[-1]
        self.next = w1 + INTERVAL
        if i0 is None or i1 is None or w1 <= w0:
            return self.most
        return self.estimate((c1 - c0) / (w1 - w0), (i1 - i0) / self.hz / (w1 - w0))

    def estimate(self, used, idle):
        """Threads for ``used`` cores of this process's CPU time and ``idle`` idle cores."""
        return max(1, min(self.most, int(used + idle + MARGIN)))
