"""Train-step throughput by device count and compute precision, at the 128^3 lego state that
train_throughput.py builds (mask and budgets in force).

    python benchmarks/scaling.py --run-dir RUN [--devices 1 2 4] [--precisions float32 bfloat16 float16] [--json OUT]
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/scaling.py --run-dir RUN   # CPU

Forced CPU devices share the machine's cores, so on a CPU the rows show the data-parallel
overhead, not a speed-up. Appends a table to benchmarks/results.md.
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
from tensorf.errors import exit_on_user_error  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Time the train step across device counts and precisions."""

    run_dir: Path = Path("runs/lego_cpu")
    """Trained lego run whose field is resampled to the grid."""
    dataset_path: Path = DEFAULT_LEGO
    """Blender-format lego folder (train split)."""
    grid: int = 128
    """Grid size (cube root of the voxel count in the run's box)."""
    batch: int = 4096
    """Global rays per step (split over the devices)."""
    devices: tuple[int, ...] = (1, 2, 4)
    """Device counts to time (at most jax.device_count())."""
    precisions: tuple[Literal["float32", "bfloat16", "float16"], ...] = ("float32", "bfloat16", "float16")
    """Compute dtypes to time (float16 with dynamic loss scaling)."""
    steps: int = 10
    """Timed steps per row (after two warm-up steps)."""
    json: Path | None = None
    """Write {"rows": [...]} here as JSON."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the table is appended to."""


def main(args: Args) -> list[dict]:
    s = lego_state.load(args.run_dir, args.dataset_path, args.batch, 1_000_000)
    rows = []
    backend = jax.default_backend()
    for n in args.devices:
        _, _, p_mask, state, budgets = lego_state.at_grid(s, args.grid, shards=n)
        for precision in args.precisions:
            config = dataclasses.replace(s.model.config, compute_dtype=precision)
            model = dataclasses.replace(s.model, config=config).for_state({**state, "budgets": budgets})
            dt = lego_state.time_step(s, model, p_mask, args.steps, devices=n, loss_scaling=precision == "float16")
            row = {"backend": backend, "devices": n, "precision": precision, "batch": args.batch,
                   "s_per_step": dt, "rays_per_s": args.batch / dt}
            rows.append(row)
            print(f"{backend} devices {n} {precision:8s} batch {args.batch}: {dt * 1000:7.0f} ms/step "
                  f"{row['rays_per_s']:8.0f} rays/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))
    device = jax.devices()[0]
    name = f"{jax.device_count()} forced CPU devices on a 2-core CPU" if device.platform == "cpu" else device.device_kind
    add_rows(
        args.results,
        f"## scaling.py (train step at {args.grid}^3 with the mask, lego 200x200 rays, {name})",
        "| date | run | devices | precision | batch | s/step | rays/s |\n|---|---|---|---|---|---|---|",
        [f"| {datetime.date.today()} | {args.run_dir.name} | {r['devices']} | {r['precision']} | {r['batch']} | "
         f"{r['s_per_step']:.3f} | {r['rays_per_s']:.0f} |" for r in rows],
    )
    return rows


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
