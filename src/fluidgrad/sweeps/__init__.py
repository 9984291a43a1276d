"""Parameter sweeps and ensembles on Dask, results in one Zarr store (extra
``fluidgrad[dask]``): :func:`sweep`, and ``fluidgrad sweep`` on the command line.

The members (:mod:`.members`) are validated in this process before anything runs; each
runs on a Dask worker (:mod:`.run`) and writes its fields into its own region of
``DIR/sweep.zarr`` (:mod:`.store`); this process only receives each member's scalars and
writes them and its status, so nothing of the members' size passes through it.
"""

from __future__ import annotations

import numbers
import os
import tempfile
from pathlib import Path

from ..errors import UsageError
from .members import Member, expand, load_members, parse_values, parse_vary  # noqa: F401

__all__ = ["sweep", "sweep_store", "Member", "expand", "load_members", "parse_values", "parse_vary"]


def sweep(scenario, vary: dict, *, zipped=False, what="run", client=None, out=None, overrides=None,
          resume=False, workers=None, threads_per_worker=1, record_every=None, on_member=None):
    """Run every member of the sweep of ``scenario`` over ``vary`` (key -> values) and
    return the store as an ``xarray.Dataset`` (``DIR/sweep.zarr``, DIR = ``out`` or a
    temporary folder; see :mod:`.store` for its layout).

    * ``what``: ``"run"`` (final fields), ``"gradient"`` (the loss of the scenario's
      ``optimize:`` block and its gradient), ``"optimize"`` (that optimization: final
      loss, iterations, optimized parameters, final fields); see :mod:`.run`.
    * ``record_every``: with ``"run"``, snapshots of the fields every K steps along ``time``.
    * ``client``: a ``dask.distributed.Client`` (its workers must see ``DIR``: they write
      their members there); None starts a ``LocalCluster`` of ``workers`` processes
      (default: the usable cores // ``threads_per_worker``), each running the kernels on
      ``threads_per_worker`` threads.
    * ``resume``: keep the members already ``done`` in the store and run the others.
    * ``on_member(index, result)`` is called in this process as each member finishes.
    """
    import xarray as xr
    return xr.open_zarr(sweep_store(scenario, vary, zipped=zipped, what=what, client=client, out=out,
                                    overrides=overrides, resume=resume, workers=workers,
                                    threads_per_worker=threads_per_worker, record_every=record_every,
                                    on_member=on_member))


def sweep_store(scenario, vary: dict, *, zipped=False, what="run", client=None, out=None, overrides=None,
                resume=False, workers=None, threads_per_worker=1, record_every=None, on_member=None):
    """:func:`sweep`, returning the path of ``sweep.zarr`` (the command line's: it does
    not read the store back, nor import xarray)."""
    from ..scenario import resolve
    from . import store
    from .run import WHAT, parameter_names, run_member

    if what not in WHAT:
        raise UsageError(f"--what {what}: expected one of {', '.join(WHAT)}")
    if record_every is not None and (what != "run" or int(record_every) < 1):
        raise UsageError(f"--record-every {record_every}: expected a step count >= 1, with --what run only")
    for flag, count in (("--workers", workers), ("--threads-per-worker", threads_per_worker)):
        if count is not None and (isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1):
            raise UsageError(f"{flag} {count}: expected a whole number >= 1")
    overrides = dict(overrides or {})
    members = expand({k: list(v) for k, v in vary.items()}, zipped)
    loaded = load_members(scenario, members, overrides)
    dims = {str(store.field_dims(s)) for s in loaded}
    if len(dims) > 1:
        raise UsageError("the members' fields differ in shape (a varied grid or boundary key); "
                         "a sweep's store holds one shape")
    names = None
    if what != "run":
        if any(s.optimize is None for s in loaded):
            raise UsageError(f"--what {what}: the scenario has no optimize: block")
        names = parameter_names(loaded[0])
        if any(len(parameter_names(s)) != len(names) for s in loaded[1:]):
            raise UsageError(f"--what {what}: the members' parameters differ in size; a sweep's store holds one")
    source = resolve(scenario)
    path = (Path(out if out is not None else tempfile.mkdtemp(prefix="fluidgrad-sweep-")) / "sweep.zarr").resolve()
    done = store.resumable(path, members, overrides, what, record_every) if resume and path.exists() else set()
    if client is None and len(done) < len(members):
        _start_forkserver()  # its imports run while this process creates the store and the cluster's scheduler
    if not done:
        path.parent.mkdir(parents=True, exist_ok=True)
        store.create(path, loaded[0], members, source.read_text(), overrides, what, record_every, names)
    todo = [m for m in members if m.index not in done]
    own = client is None and todo
    cluster = None
    if own:
        client, cluster = _local_client(workers, threads_per_worker)
    try:
        from dask.distributed import as_completed
        futures = {client.submit(run_member, str(source), {**overrides, **m.values}, what, str(path), m.index,
                                 record_every, pure=False,
                                 key=f"fluidgrad-member-{m.index}-{os.getpid()}-{id(members)}"): m for m in todo}
        summary = store.SummaryWriter(path)
        try:
            for future in as_completed(futures):
                member = futures.pop(future)
                result = future.result()  # the member's scalars: its arrays are in the store already
                summary.write(member.index, result)
                if on_member is not None:
                    on_member(member.index, result)
                del future, result
        finally:  # also when interrupted: every member that finished is recorded
            summary.flush()
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    return path


def _start_forkserver():
    """Start the ``forkserver`` the local cluster's workers are forked from, importing the
    member code once, where the platform has one (its children ignore SIGINT: see
    :mod:`.forked`); returns the start method to use."""
    import multiprocessing

    import dask
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return dask.config.get("distributed.worker.multiprocessing-method")
    import multiprocessing.forkserver
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["fluidgrad.sweeps.run", "distributed", "zarr", "fluidgrad.sweeps.forked"])
    os.environ["FLUIDGRAD_FORKSERVER"] = "1"  # for .forked, in the forkserver only
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        del os.environ["FLUIDGRAD_FORKSERVER"]
    return "forkserver"


def _local_client(workers, threads_per_worker):
    """A ``LocalCluster`` that does not oversubscribe the cores this process may use.

    Its worker processes are forked from a ``forkserver`` that has imported the member
    code once (:func:`_start_forkserver`): each worker skips those imports, and the
    cluster closes in ~0.05 s, where spawned workers took 0.7-1.3 s to shut down."""
    import dask
    from dask.distributed import Client, LocalCluster
    from ..ops.cores import usable_cores
    threads = int(threads_per_worker)
    workers = workers or max(1, usable_cores() // threads)
    with dask.config.set({"distributed.worker.multiprocessing-method": _start_forkserver()}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                               env={"FLUIDGRAD_THREADS": str(threads)})
    return Client(cluster), cluster
