"""Where the train step's time goes at the lego recipe's final size, and which density lookup and
compaction make the fastest step there (issue 13: choose them from measurements).

    python benchmarks/step_profile.py --data DIR [--grid 300] [--batch 4096] [--json OUT]

Needs no trained run: the field is three solid blocks the size of lego's parts, one per VM pair,
built at 128^3 in the full box; the box is then shrunk to the blocks, the grid resized to grid^3
voxels there, the mask rebuilt and the ray pool filtered, as the recipe's schedule does by its
last upsampling. The training rays are DIR's train split (lego's, at --downscale), so the batch
draw and the rays' paths through the box are the real ones. Cost does not depend on the values
in the grids, only on how many samples are live and heavy enough to shade, which the blocks'
solid surfaces give in lego-like shares (printed).

For each `lookup/compaction` variant the whole jitted step is timed two ways: one step at a time
(blocking) and back to back (queued as the training loop queues them: the figure that decides).
Then the step's parts, each as its own jitted program: the samples and mask, the density lookup
forward + backward at every sample (each lookup), the colour forward + backward at the top-k
samples, the top-k itself, and the optimizer update.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import DEFAULT_LEGO  # noqa: E402
from lego_state import step_timings  # noqa: E402
from tensorf.config import resolve  # noqa: E402
from tensorf.data.dataset import load_dataset  # noqa: E402
from tensorf.data.rays import RayPool  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402
from tensorf.fields import vm  # noqa: E402
from tensorf.models.base import build_model, build_schedule  # noqa: E402
from tensorf.presets import LEGO, PRESETS  # noqa: E402
from tensorf.render import compositing_weights, top_k_samples  # noqa: E402
from tensorf.training.trainer import filter_pool, measure_budgets  # noqa: E402
from tensorf.training.optimizer import make_optimizer  # noqa: E402

# World-space blocks (min, max), one per VM pair: a base plate, a tower and an arm, spanning
# about what lego's shrunk box spans.
BLOCKS = (((-0.6, -1.1, -0.35), (0.6, 1.1, 0.0)), ((-0.3, -0.3, 0.0), (0.3, 0.6, 1.0)), ((-0.1, -1.1, 0.0), (0.1, 0.0, 0.6)))
SOLID = 20.0  # raw density inside a block: softplus(20 - 10) * 25 = 250 per unit, opaque in a few samples


@dataclasses.dataclass(frozen=True)
class Args:
    """Time the train step and its parts at the recipe's final grid."""

    data: Path = DEFAULT_LEGO
    """Blender-format lego folder (its train split gives the rays)."""
    downscale: int = 1
    """Image downscale (1: 800x800, the recipe's)."""
    grid: int = 300
    """Grid size (cube root of the voxel count in the shrunk box)."""
    batch: int = 4096
    """Rays per step."""
    steps: int = 20
    """Timed steps per row (after two warm-up steps)."""
    variants: tuple[str, ...] = ("volume/off", "volume/shade", "volume/on", "factors/off", "factors/shade",
                                 "factors/on", "volume/on/bfloat16", "volume/on/float16")
    """`density_lookup/compaction[/compute_dtype]` to time as whole steps; the fastest float32 one
    is reported as the choice (another dtype changes the results, not only the speed)."""
    parts: bool = True
    """Also time the step's parts."""
    nerf: tuple[str, ...] = ("nerf/float32", "nerf/bfloat16", "jaxnerf-plus/float32", "jaxnerf-plus/bfloat16")
    """`preset/compute_dtype` of the NeRF family to time as whole steps on the same rays and batch
    (empty: none)."""
    trace: Path | None = None
    """Also record `--steps` queued steps of the first variant with JAX's profiler into this folder
    (plugins/profile/*/perfetto_trace.json.gz: every kernel of the step, for
    benchmarks/trace_summary.py; a few MB)."""
    json: Path | None = None
    """Write the rows here as JSON ({"steps": [...], "parts": [...], "nerf": [...], "best": ...}), again after
    every row, so that a run cut short still names the fastest variant it timed."""


def blocks(factors: vm.VMFactors, aabb: np.ndarray) -> vm.VMFactors:
    """The density factors with component 0 of pair i set to BLOCKS[i]'s indicator."""
    res = factors.resolution
    coords = [np.linspace(aabb[0][d], aabb[1][d], res[d]) for d in range(3)]
    planes, lines = list(factors.planes), list(factors.lines)
    for i, ((a, b), v) in enumerate(zip(vm.PLANE_AXES, vm.LINE_AXIS)):
        lo, hi = BLOCKS[i]
        ind = [((coords[d] >= lo[d]) & (coords[d] <= hi[d])).astype(np.float32) for d in range(3)]
        planes[i] = planes[i].at[:, :, 0].set(SOLID * ind[a][:, None] * ind[b][None, :])
        lines[i] = lines[i].at[:, 0].set(ind[v])
    return vm.VMFactors(planes=tuple(planes), lines=tuple(lines))


def final_state(cfg, data, grid: int):
    """(model, schedule, params, state, pool): the blocks at grid^3 in their shrunk box, masked,
    with the training rays that cross the mask."""
    model = build_model(cfg.model, data.scene)
    schedule = build_schedule(model)
    state = model.initial_state()
    params = model.init(jax.random.key(0), state)
    params["density"] = blocks(params["density"], np.asarray(params["aabb"]))
    params, state = schedule.shrink(params, state)
    res = vm.voxels_to_resolution(grid**3, np.asarray(params["aabb"]))
    params = schedule.resize(params, res)
    params["density"] = blocks(params["density"], np.asarray(params["aabb"]))
    state = {**state, "resolution": list(res), "level": len(cfg.model.upsample_steps),
             "mask_updates": len(cfg.model.mask_update_steps)}
    params, state = schedule.update_mask(params, state)
    pool = filter_pool(schedule, params, state, jax.device_put(RayPool.from_views(data.train)))
    return model, schedule, params, state, pool


def timed(fn, *args, steps: int) -> dict:
    """Compile seconds, then median seconds per call (blocking each) over `steps` calls."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "ms": 1000 * float(np.median(times[2:]))}


def main(args: Args) -> dict:
    cfg = dataclasses.replace(LEGO, batch_size=args.batch, data=dataclasses.replace(
        LEGO.data, path=args.data, downscale=args.downscale, eval_split="val", eval_views=(0,)))
    t0 = time.perf_counter()
    data = load_dataset(cfg.data)
    model, schedule, params, state, pool = final_state(cfg, data, args.grid)
    n = model.num_samples(state["resolution"])
    rays, _ = pool.draw(jax.random.key(1), args.batch)
    keys = jax.random.split(jax.random.key(2), args.batch)
    shares = jax.jit(model.live_fractions)(params, rays, keys)
    head = (f"{jax.devices()[0].device_kind}: grid {'x'.join(map(str, state['resolution']))}, batch {args.batch}, "
            f"N {n}, k {cfg.model.appearance_samples}; live {float(shares['density']):.3f}, shade "
            f"{float(shares['shade']):.3f}; {len(pool)} rays in play; set-up {time.perf_counter() - t0:.0f} s")
    print(head, flush=True)

    steps, parts, nerf_steps = [], [], []

    def write() -> dict:
        float32 = [r for r in steps if r["dtype"] == "float32"]
        best = min(float32, key=lambda r: r["queued_ms"])["variant"] if float32 else None
        out = {"head": head, "samples_per_ray": n, "live": float(shares["density"]), "shade": float(shares["shade"]),
               "steps": steps, "parts": parts, "nerf": nerf_steps, "best": best}
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return out

    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
        (args.trace / "steps.json").write_text(json.dumps({"steps": args.steps, "variant": args.variants[0]}))
    for variant in args.variants:
        lookup, compaction, dtype = (variant.split("/") + ["float32"])[:3]
        mcfg = resolve(dataclasses.replace(cfg.model, density_lookup=lookup, compaction=compaction,
                                    compute_dtype=dtype), data.scene, jax.default_backend())
        vcfg = dataclasses.replace(cfg, model=mcfg)
        m = dataclasses.replace(model, config=mcfg)
        budgets = measure_budgets(vcfg, build_schedule(m), params, pool, 0)
        m = m.for_state({**state, "budgets": budgets})
        tx = make_optimizer(m, vcfg.optim)
        row = {"variant": variant, "dtype": dtype, "budgets": budgets,
               **step_timings(vcfg, tx, m, params, pool, args.steps, loss_scaling=dtype == "float16",
                              trace=args.trace if variant == args.variants[0] else None)}
        steps.append(row)
        print(f"step {variant:12s} budgets {budgets}: compile {row['compile_s']:5.1f} s, {row['ms']:7.2f} ms blocking, "
              f"{row['queued_ms']:7.2f} ms queued ({args.batch / row['queued_ms'] * 1e3:,.0f} rays/s)", flush=True)
        write()

    for variant in args.nerf:
        # The NeRF family's step at the same batch, on every training ray (NeRF has no box to filter by).
        name, dtype = variant.split("/")
        preset = PRESETS[name][1]
        ncfg = dataclasses.replace(preset, batch_size=args.batch, data=cfg.data,
                                   model=dataclasses.replace(preset.model, compute_dtype=dtype))
        m = build_model(ncfg.model, data.scene)
        p = m.init(jax.random.key(0), m.initial_state())
        row = {"variant": variant, "dtype": dtype, **step_timings(ncfg, make_optimizer(m, ncfg.optim), m, p,
                                                                  jax.device_put(RayPool.from_views(data.train)),
                                                                  args.steps, loss_scaling=dtype == "float16")}
        nerf_steps.append(row)
        print(f"step {variant:22s}: compile {row['compile_s']:5.1f} s, {row['ms']:7.2f} ms blocking, "
              f"{row['queued_ms']:7.2f} ms queued ({args.batch / row['queued_ms'] * 1e3:,.0f} rays/s)", flush=True)
        write()

    if args.parts:
        pts_all = model.samples(params, rays, keys)[2].reshape(-1, 3)
        k = cfg.model.appearance_samples
        top = pts_all[: args.batch * k]
        dirs = jnp.broadcast_to(rays.directions[:, None, :], (args.batch, k, 3)).reshape(-1, 3)
        weights = jax.random.uniform(jax.random.key(3), (args.batch, n))

        def density_grad(lookup):
            m = dataclasses.replace(model, config=dataclasses.replace(model.config, density_lookup=lookup))
            return lambda p, x: jax.grad(lambda d: jnp.sum(m._field_density({**p, "density": d}, x)))(p["density"])

        cases = {
            "samples + mask (forward)": (lambda p, r, kk: model.samples(p, r, kk)[3], (params, rays, keys)),
            "density factors (fwd + bwd, every sample)": (density_grad("factors"), (params, pts_all)),
            "density volume (fwd + bwd, every sample)": (density_grad("volume"), (params, pts_all)),
            "colour (fwd + bwd, top-k samples)": (
                lambda p, x, d: jax.grad(lambda q: jnp.sum(model.color(q, x, d)))(p), (params, top, dirs)),
            "compositing weights (fwd + bwd)": (
                lambda s: jax.grad(lambda s: jnp.sum(compositing_weights(s, 0.01) ** 2))(s), (weights,)),
            "top-k": (lambda w: top_k_samples(w, k), (weights,)),
        }
        tx = make_optimizer(model, cfg.optim)
        opt = tx.init(params)
        cases["optimizer update"] = (lambda g, o, p: tx.update(g, o, p), (params, opt, params))
        for name, (fn, fargs) in cases.items():
            row = {"part": name, **timed(fn, *fargs, steps=args.steps)}
            parts.append(row)
            print(f"part {name:44s}: compile {row['compile_s']:5.1f} s, {row['ms']:7.2f} ms", flush=True)
            write()
    out = write()
    print(f"fastest step: {out['best']}", flush=True)
    return out


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
