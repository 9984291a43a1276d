"""What a benchmark ran on: the CPU model, its vector extensions, the cores this process
may use and the threads fluidgrad's kernels take (imported by the scripts in this folder)."""

from __future__ import annotations

import os
import platform

VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "amx_tile",
                "neon", "asimd", "sve")


def describe() -> dict:
    """``cpu`` (model name), ``vector`` (the SIMD extensions among :data:`VECTOR_FLAGS`),
    ``logical_cpus``, ``usable_cores`` and ``threads`` (fluidgrad's kernels)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    from fluidgrad.ops import compiled
    return {"cpu": model, "vector": [f for f in VECTOR_FLAGS if f in flags], "logical_cpus": os.cpu_count(),
            "usable_cores": compiled.usable_cores(), "threads": compiled.threads()}


def headline(info=None) -> str:
    """One line: ``CPU model (avx2 fma ...), N usable cores, T kernel threads``."""
    info = info or describe()
    return (f"{info['cpu']} ({' '.join(info['vector']) or 'no SIMD flags read'}), {info['usable_cores']} usable "
            f"of {info['logical_cpus']} logical CPUs, {info['threads']} kernel threads")
