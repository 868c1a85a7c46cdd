"""Data parallelism: a 1-D device mesh along the ray axis, and the per-device train step.

Written with `jax.shard_map` (JAX now builds pmap on it and recommends it for new per-device
code): the per-device program is explicit, so each device renders its own shard of the ray batch
with its own work budgets (shares of a shard), and gradients are averaged with `pmean`, while
params and optimizer state stay ordinary replicated arrays that orbax saves and any device count
restores.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tensorf.errors import UserError

AXIS = "data"


def make_mesh(num_devices: int | None, batch_size: int) -> Mesh:
    """A mesh over the first `num_devices` devices (all when None) that splits `batch_size` rays."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise UserError(f"--num-devices {n}: this machine has {len(devices)} {devices[0].platform} device(s)")
    if batch_size % n:
        raise UserError(f"--batch-size {batch_size} does not split over {n} devices; use a multiple of {n}")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def all_devices() -> Mesh:
    """A mesh over every device, for rendering (any chunk size that is a multiple of it)."""
    return Mesh(np.asarray(jax.devices()), (AXIS,))


def replicate(mesh: Mesh, tree):
    """Every leaf on every device of the mesh (params, optimizer state, totals)."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard(mesh: Mesh, tree):
    """Every leaf split along its leading (ray) axis over the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P(AXIS)))


def global_batch(mesh: Mesh, local_tree):
    """This process's rays (leading axis) as its part of the global batch, split over the mesh."""
    if jax.process_count() == 1:
        return shard(mesh, local_tree)
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_tree)


def render_mesh() -> Mesh | None:
    """Devices to spread whole-image renders over: all of them on one host. With several
    processes, each renders on its own replicated copy (None), so results stay readable on the host."""
    return all_devices() if jax.process_count() == 1 else None


def jit_over_rows(fn, mesh: Mesh | None, n_rows: int):
    """jit of fn(params, *rows) -> outputs with rows first; with a mesh of several devices each
    device takes an equal share of the rows (their count must be a multiple of mesh.size, see
    rows_per_call) and params must be replicated on the mesh."""
    if mesh is None or mesh.size == 1:
        return jax.jit(fn)
    return jax.jit(data_parallel(fn, mesh, n_before=1, n_batch_args=n_rows, n_after=0, sharded_out=True))


def rows_per_call(mesh: Mesh | None) -> int:
    """What every chunk handed to a jit_over_rows function must be a multiple of."""
    return 1 if mesh is None else mesh.size


def data_parallel(per_device, mesh: Mesh, n_batch_args: int, n_before: int, n_after: int, sharded_out: bool = False):
    """shard_map `per_device` over the mesh: `n_before` replicated arguments, then `n_batch_args`
    split along the ray axis, then `n_after` replicated ones. Outputs are replicated (the
    per-device program reduces across AXIS itself) or, with sharded_out, split along the ray axis."""
    specs = (P(),) * n_before + (P(AXIS),) * n_batch_args + (P(),) * n_after
    return jax.shard_map(per_device, mesh=mesh, in_specs=specs, out_specs=P(AXIS) if sharded_out else P())
