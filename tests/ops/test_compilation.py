"""What the fused kernels compile: a forward run compiles only the forward kernels it
calls, each for one signature per dtype (a cold first run pays seconds per compilation)."""

import json
import os
import subprocess
import sys

import pytest

from fluidgrad.ops import compiled

pytestmark = pytest.mark.skipif(not compiled.enabled(), reason="numba is not installed or FLUIDGRAD_NUMBA=0")

_SCAN = '''
import json, sys, tempfile, os
from fluidgrad import cli
out = os.path.join(tempfile.mkdtemp(), "o")
rc = cli.main(["run", "smoke_plume", "--quiet", "--out", out, "--steps", "2", "--threads", sys.argv[1],
               "--set", "grid.resolution=[48,64]", "--set", "output.video=null"])
from numba.core.registry import CPUDispatcher
from fluidgrad.ops.compiled import Twin
found = {}
for name in sorted(sys.modules):
    if name.startswith("fluidgrad.ops."):
        for value in vars(sys.modules[name]).values():
            for d in ([value.serial, value.parallel] if isinstance(value, Twin) else [value]):
                if isinstance(d, CPUDispatcher) and d.overloads:
                    found[d.py_func.__name__] = [str(s) for s in d.overloads]
print(json.dumps({"rc": rc, "compiled": found}))
'''


def _compiled_by_a_forward_run(threads, cache):
    """The functions a short forward run compiles, with their signatures; numba's cache in
    the empty folder ``cache`` (a function loaded with its caller from the cache is not
    listed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), NUMBA_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-c", _SCAN, str(threads)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0
    return out["compiled"]


def test_a_forward_run_compiles_one_signature_of_forward_kernels_only(tmp_path):
    found = _compiled_by_a_forward_run(2, tmp_path)  # the parallel forms (serial with one core); they share the rows
    assert found, "the run compiled (or loaded) no fused kernel"
    assert not [name for name in found if "vjp" in name or "jvp" in name or "transpose" in name]
    assert not [name for name in found if name.lstrip("_") == "prepare"]  # Jacobi's; this run solves with DCT
    twice = {name: sigs for name, sigs in found.items() if len(sigs) > 1}
    assert not twice, f"compiled more than once: {twice}"
    literal = {name: sigs for name, sigs in found.items() if any("Literal" in s or "omitted" in s for s in sigs)}
    assert not literal, f"compiled for a constant's value: {literal}"
