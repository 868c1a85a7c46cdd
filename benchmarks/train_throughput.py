"""Train-step throughput with and without the occupancy mask, at fixed grid and batch sizes.

    python benchmarks/train_throughput.py --run-dir RUN [--grids 128 300] [--batch 4096] [--json OUT]

RUN is a trained lego run (e.g. from benchmarks/lego_cpu.py): its field, box and mask are
resampled to each grid size, the mask is rebuilt there, and the jitted train step is timed on
random batches of the real lego training rays (the same ray pool, filtered to the box, for
every row). "samples/s" counts all samples per ray (the fixed N); "live" is the share of those
samples the mask leaves to evaluate, "shade" the share of the top-k samples heavy enough to
colour; the budgets are the slots the step gives each (with headroom).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import DEFAULT_LEGO, ROOT, add_rows  # noqa: E402
from tensorf.config import resolve_backend  # noqa: E402
from tensorf.data.blender import load_blender  # noqa: E402
from tensorf.data.rays import RayPool  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402
from tensorf.fields import vm  # noqa: E402
from tensorf.models.base import build_schedule  # noqa: E402
from tensorf.run import restore_run  # noqa: E402
from tensorf.training.loop import filter_pool, measure_budgets  # noqa: E402
from tensorf.training.optimizer import lrs_at, make_optimizer  # noqa: E402
from tensorf.training.step import initial_totals, make_train_step  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Time the train step at fixed grid/batch sizes, mask on and off."""

    run_dir: Path = Path("runs/lego_cpu")
    """Trained lego run whose field is resampled to each grid size."""
    dataset_path: Path = DEFAULT_LEGO
    """Blender-format lego folder (train split, downscale 4)."""
    grids: tuple[int, ...] = (128, 300)
    """Grid sizes (cube root of the voxel count in the run's box)."""
    batch: int = 4096
    """Rays per step."""
    steps: int = 5
    """Timed steps per row (after one compile step)."""
    max_samples: int = 1_000_000
    """Cap on samples per ray (default: the official, uncapped nSamples of each grid)."""
    lookups: tuple[Literal["auto", "factors", "volume", "mixed"], ...] = ("auto",)
    """Density lookups to time (model.density_lookup); each adds a mask-off and a mask-on row."""
    json: Path | None = None
    """Write {"rows": [...]} here as JSON."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the table is appended to."""


def main(args: Args) -> list[dict]:
    cfg, model, params, meta = restore_run(args.run_dir)
    cfg = dataclasses.replace(
        cfg, batch_size=args.batch, model=dataclasses.replace(cfg.model, max_samples=args.max_samples)
    )
    model = dataclasses.replace(model, config=cfg.model)
    schedule = build_schedule(model)
    views = load_blender(args.dataset_path, "train", cfg.data.downscale)
    pool = RayPool.from_views(views)
    box_only = {**meta["model_state"], "mask_updates": 0}
    pool = filter_pool(schedule, params, box_only, pool)
    tx = make_optimizer(model, cfg.optim)
    rows = []
    for grid in args.grids:
        res = vm.voxels_to_resolution(grid**3, np.asarray(params["aabb"]))
        p = schedule.resize(params, res)
        state = {**meta["model_state"], "resolution": list(res)}
        # The mask is rebuilt from the field alone, as a first mask update would.
        p_mask, state = schedule.update_mask({**p, "occupancy": jnp.ones((1, 1, 1))}, state)
        budgets = measure_budgets(cfg, schedule, p_mask, pool, 0)
        shares = jax.jit(model.live_fractions)(p_mask, pool.batch(1, 0, args.batch)[0], jax.random.split(jax.random.key(0), args.batch))
        for lookup, mask in ((lookup, mask) for lookup in args.lookups for mask in (False, True)):
            timed = dataclasses.replace(model, config=resolve_backend(dataclasses.replace(cfg.model, density_lookup=lookup), jax.default_backend()))
            if mask:
                m, prm = timed.for_state({**state, "budgets": budgets}), p_mask
            else:
                m, prm = timed.for_state({**state, "budgets": None}), {**p, "occupancy": jnp.ones((1, 1, 1))}
            prm = jax.tree.map(jnp.array, prm)  # the step donates its inputs; keep p and p_mask alive
            opt = tx.init(prm)
            step = make_train_step(m, tx)
            lrs = {k: jnp.float32(v) for k, v in lrs_at(cfg, 0).items()}
            w = {k: jnp.float32(v) for k, v in m.loss_weights(10**9).items()}
            rays, cols = pool.batch(0, 0, args.batch)
            totals = initial_totals()
            for _ in range(2):  # compile, then once more: outputs fed back in can retrace once
                prm, opt, totals, _, st = step(prm, opt, totals, None, rays, cols, jax.random.key(0), lrs, w)
                jax.block_until_ready(st)
            times = []
            for i in range(args.steps):
                rays, cols = pool.batch(0, i + 1, args.batch)
                t0 = time.perf_counter()
                prm, opt, totals, _, st = step(prm, opt, totals, None, rays, cols, jax.random.key(i), lrs, w)
                jax.block_until_ready(st)
                times.append(time.perf_counter() - t0)
            dt = float(np.median(times))
            n = m.num_samples(res)
            row = {
                "grid": grid,
                "resolution": list(res),
                "batch": args.batch,
                "mask": mask,
                "lookup": lookup,
                "samples_per_ray": n,
                "live_fraction": float(shares["density"]) if mask else 1.0,
                "shade_fraction": float(shares["shade"]) if mask else 1.0,
                "budgets": budgets if mask else None,
                "s_per_step": dt,
                "rays_per_s": args.batch / dt,
                "samples_per_s": args.batch * n / dt,
            }
            rows.append(row)
            print(
                f"grid {grid:4d} {tuple(res)} batch {args.batch} {lookup:7s} mask {str(mask):5s} N {n:4d} live {row['live_fraction']:.3f} "
                f"shade {row['shade_fraction']:.3f} budgets {row['budgets']}: {dt * 1000:7.0f} ms/step {row['rays_per_s']:8.0f} rays/s {row['samples_per_s'] / 1e6:6.2f} M samples/s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))
    add_rows(
        args.results,
        f"## train_throughput.py (jitted train step, lego 200x200 training rays, {_device()})",
        "| date | run | grid | resolution | batch | lookup | mask | N | live | shade | budgets (density, shade) | s/step | rays/s | M samples/s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        [
            f"| {datetime.date.today()} | {args.run_dir.name} | {r['grid']} | {'x'.join(map(str, r['resolution']))} | "
            f"{r['batch']} | {r['lookup']} | {r['mask']} | {r['samples_per_ray']} | {r['live_fraction']:.3f} | {r['shade_fraction']:.3f} | "
            f"{_fmt_budgets(r['budgets'])} | "
            f"{r['s_per_step']:.3f} | {r['rays_per_s']:.0f} | {r['samples_per_s'] / 1e6:.2f} |"
            for r in rows
        ],
    )
    return rows


def _device() -> str:
    d = jax.devices()[0]
    return "2-core CPU" if d.platform == "cpu" else d.device_kind


def _fmt_budgets(budgets: dict | None) -> str:
    if not budgets:
        return "-"
    return ", ".join("-" if budgets[k] is None else f"{budgets[k]:.3f}" for k in ("density", "shade"))


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
