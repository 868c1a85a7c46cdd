"""Train-step throughput with and without the occupancy mask, at fixed grid and batch sizes.

    python benchmarks/train_throughput.py --run-dir RUN [--grids 128 300] [--batch 4096] [--json OUT]

RUN is a trained lego run (e.g. from benchmarks/lego_cpu.py or lego_gpu.py): its field, box and mask are
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
from pathlib import Path
from typing import Literal

import jax
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import lego_state  # noqa: E402
from common import DEFAULT_LEGO, ROOT, add_rows  # noqa: E402
from tensorf.config import resolve  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Time the train step at fixed grid/batch sizes, mask on and off."""

    run_dir: Path = Path("runs/lego_cpu")
    """Trained lego run whose field is resampled to each grid size."""
    dataset_path: Path = DEFAULT_LEGO
    """Blender-format lego folder (its train split, at the run's downscale)."""
    grids: tuple[int, ...] = (128, 300)
    """Grid sizes (cube root of the voxel count in the run's box)."""
    batch: int = 4096
    """Rays per step."""
    steps: int = 15
    """Timed steps per row (after two warm-up steps); with 5, rows scattered by +-20% on a 2-core CPU."""
    max_samples: int = 1_000_000
    """Cap on samples per ray (default: the official, uncapped nSamples of each grid)."""
    lookups: tuple[Literal["auto", "factors", "volume", "mixed"], ...] = ("auto",)
    """Density lookups to time (model.density_lookup); each adds a mask-off and a mask-on row."""
    json: Path | None = None
    """Write {"rows": [...]} here as JSON."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the table is appended to."""


def main(args: Args) -> list[dict]:
    s = lego_state.load(args.run_dir, args.dataset_path, args.batch, args.max_samples)
    rows = []
    for grid in args.grids:
        res, p, p_mask, state, budgets = lego_state.at_grid(s, grid)
        shares = jax.jit(s.model.live_fractions)(
            p_mask, s.pool.draw(jax.random.key(1), args.batch)[0], jax.random.split(jax.random.key(0), args.batch)
        )
        for lookup, mask in ((lookup, mask) for lookup in args.lookups for mask in (False, True)):
            config = resolve(dataclasses.replace(s.cfg.model, density_lookup=lookup), s.model.scene, jax.default_backend())
            timed = dataclasses.replace(s.model, config=config)
            m = timed.for_state({**state, "budgets": budgets if mask else None})
            dt = lego_state.time_step(s, m, p_mask if mask else p, args.steps)
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
        f"## train_throughput.py (jitted train step, lego {_size(s.pool)} training rays, {_device()})",
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


def _size(pool) -> str:
    # 200x200 rows were written before this column said so; keep their section.
    return f"{pool.size[1]}x{pool.size[0]}"


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
