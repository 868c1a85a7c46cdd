"""The official lego recipe (`--preset lego`: VM-192, 128^3 -> 300^3, batch 4096, 30k steps) at
full resolution on one accelerator, timed, measured and evaluated.

    python benchmarks/lego_gpu.py --data DIR [--steps 30000] [--run-dir RUN] [--json OUT]

DIR is a Blender-format lego folder: train/ with transforms_train.json, and transforms_val.json
with (at least) the val views evaluated (`--eval-views`, default every 4th: r_0, r_4, ..., r_96;
the other val images need not be there). Reports training wall time: the whole train() call
(loading, the first compile, the steps, the final checkpoint) and its loop alone, with and
without compilation (every XLA compile during training, timed by jax.monitoring), steps/s, peak device
memory in training (the device's memory_stats(); peak RSS on a CPU), and PSNR / SSIM on the val views, and
appends a row to benchmarks/results.md naming the device.

With fewer --steps the recipe's schedule (upsampling, mask updates) is compressed to fit, so a
CPU can rehearse the whole run at a small size, e.g.
`--steps 300 --downscale 8 --final-voxels 2000000 --batch-size 1024`.

Time to quality: every --quality-every-s seconds of training the mean PSNR of the first
--quality-views eval views is taken (its render time is not training time, its compiles do count
in compile_s), and the time to 30, 33, 35 and 36 dB is printed. `--preset lego-fast` runs the
preset aimed at 35 dB in a minute.
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
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import ROOT, add_rows, device_name, peak_memory_gib  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402
from tensorf.eval import evaluate_views  # noqa: E402
from tensorf.data.dataset import load_dataset  # noqa: E402
from tensorf.parallel import render_mesh  # noqa: E402
from tensorf.presets import PRESETS  # noqa: E402
from tensorf.training.loop import train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Train the official lego recipe, then evaluate val views; one results row."""

    data: Path
    """Blender-format lego folder (train split, transforms_val.json and the val views evaluated)."""
    preset: Literal["lego", "lego-fast"] = "lego"
    """The recipe: the official one, or the one aimed at 35 dB in a minute."""
    steps: int | None = None
    """Training steps (default: the preset's); fewer compress its event schedule in proportion."""
    run_dir: Path = Path("runs/lego_gpu")
    """Run directory to write (config, checkpoints, TensorBoard, eval images)."""
    downscale: int = 1
    """Image downscale factor (1: 800x800, the published setting)."""
    eval_views: tuple[int, ...] = tuple(range(0, 100, 4))
    """Val views to evaluate (indices into transforms_val.json)."""
    density_lookup: Literal["auto", "factors", "volume", "mixed"] = "auto"
    """model.density_lookup for the run."""
    compaction: Literal["on", "off", "shade"] = "on"
    """model.compaction for the run."""
    stop_after_minutes: float | None = None
    """Stop training at this wall time even if steps remain (then checkpoint and evaluate), so a
    device lease always ends with figures; the schedule stays the steps'."""
    batch_size: int | None = None
    """Rays per step (default: the preset's, 4096)."""
    final_voxels: int | None = None
    """Voxels after the last upsampling (default: the preset's, 300^3)."""
    eval: bool = True
    """Evaluate the val views after training (--no-eval: training figures only, no results row)."""
    render_chunk: int = 16384
    """Rays per chunk when rendering the eval views (bounds the eval's memory)."""
    json: Path | None = None
    """Also write the figures here as JSON."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the result row is appended to."""
    note: str = ""
    """Free text for the row's notes column."""
    quality_every_s: float = 10.0
    """Seconds of training between time-to-quality points (0: none)."""
    quality_views: int = 4
    """Eval views each time-to-quality point renders (the first of --eval-views)."""


THRESHOLDS_DB = (30.0, 33.0, 35.0, 36.0)


def time_to(points: list, threshold: float) -> float | None:
    """Training seconds of the first (seconds, step, PSNR) point at or above threshold."""
    return next((s for s, _, psnr in points if psnr >= threshold), None)


def compressed(steps: tuple[int, ...], factor: float) -> tuple[int, ...]:
    return tuple(max(1, round(s * factor)) for s in steps)


def config(args: Args):
    recipe = PRESETS[args.preset][1]
    steps = args.steps or recipe.steps
    f = steps / recipe.steps
    model = dataclasses.replace(
        recipe.model,
        upsample_steps=compressed(recipe.model.upsample_steps, f),
        mask_update_steps=compressed(recipe.model.mask_update_steps, f),
        n_voxels_final=args.final_voxels or recipe.model.n_voxels_final,
        density_lookup=args.density_lookup,
        compaction=args.compaction,
    )
    return dataclasses.replace(
        recipe,
        run_dir=args.run_dir,
        steps=steps,
        batch_size=args.batch_size or recipe.batch_size,
        render_chunk=args.render_chunk,
        eval_every=0,
        checkpoint_every=max(steps // 3, 1),
        final_eval=False,
        stop_after_minutes=args.stop_after_minutes,  # evaluated below, so that its compiles are not counted as training's
        progress=False,
        log_every=max(steps // 30, 1),
        quality_every_s=args.quality_every_s,
        quality_views=args.quality_views,
        data=dataclasses.replace(recipe.data, path=args.data, downscale=args.downscale, eval_split="val",
                                 eval_views=args.eval_views),
        model=model,
    )


class CompileClock:
    """Seconds spent in XLA compilation (every jit in the process), from jax.monitoring."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.total = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name: str, seconds: float, **_):
        if name == self.EVENT:
            self.total += seconds


def main(args: Args) -> dict:
    cfg = config(args)
    clock = CompileClock()
    t0 = time.perf_counter()
    result = train(cfg)
    wall_s = time.perf_counter() - t0
    compile_s = clock.total
    train_peak, peak_kind = peak_memory_gib()
    figures = {
        "device": device_name(),
        "steps": result.steps,
        "wall_s": wall_s,
        "train_s": result.elapsed_s,
        "compile_s": compile_s,
        "step_compile_s": result.compile_s,
        "train_s_without_compile": result.elapsed_s - compile_s,
        "steps_per_s": result.steps / result.elapsed_s,
        "peak_gib_train": train_peak,
        "peak_kind": peak_kind,
        "resolution": result.model_state["resolution"],
        "density_lookup": result.model.config.density_lookup,
        "compaction": result.model.config.compaction,
        "preset": args.preset,
        "quality": result.quality,
        "time_to_db": {f"{thr:g}": time_to(result.quality, thr) for thr in THRESHOLDS_DB},
        # Per schedule event: the seconds the loop waited for the step's compile, whether it was
        # compiled ahead, the seconds of XLA compiles on the loop's thread during the event (what
        # was still compiled on the critical path, the step's included) and their programs, and
        # the step at which the measured budgets came in.
        "events": [{"step": step, "waited_s": round(next((w for s, w, _ in result.compiles if s == step), 0.0), 2),
                    "ahead": next((a for s, _, a in result.compiles if s == step), False),
                    "loop_compile_s": round(seconds, 2), "loop_compiles": names,
                    "measured_budgets_at": next((s for e, s in result.tightened if e == step), None)}
                   for step, seconds, names in result.event_compiles],
    }
    if result.quality:
        print("time to " + ", ".join(f"{k} dB: {'not reached' if v is None else f'{v:.0f} s'}"
                                     for k, v in figures["time_to_db"].items())
              + f" (best {max(p[2] for p in result.quality):.2f} dB on {args.quality_views} val views)", flush=True)
    print(json.dumps(figures), flush=True)
    if args.eval:
        data = load_dataset(cfg.data)
        t0 = time.perf_counter()
        metrics = evaluate_views(result.model, result.params, data.eval, Path(cfg.run_dir) / "eval", data.eval_split,
                                 cfg.render_chunk, verbose=False, mesh=render_mesh())
        figures.update(eval_s=time.perf_counter() - t0, psnr=metrics["psnr"], ssim=metrics["ssim"],
                       eval_views=len(metrics["views"]), image_size=f"{data.eval.width}x{data.eval.height}",
                       peak_gib=peak_memory_gib()[0])
        print(json.dumps(figures, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not args.eval:
        return figures
    f = figures
    reached = ", ".join(f"{k} dB {v:.0f} s" for k, v in f["time_to_db"].items() if v is not None)
    waits = ", ".join(f"{e['step']} {e['waited_s']:.1f}{' (ahead)' if e['ahead'] else ''}"
                      f" / {e['loop_compile_s']:.1f}" for e in f["events"])
    add_rows(
        args.results,
        "## lego_gpu.py (official lego recipe, full train split, val every 4th view)",
        "| date | device | image | steps | lookup / compaction | train min: all / loop (compile s) | steps/s | peak GiB | "
        "val views | val PSNR | val SSIM | notes |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        [
            f"| {datetime.date.today()} | {f['device']} | {f['image_size']} | {f['steps']} | "
            f"{f['density_lookup']} / {f['compaction']} | {f['wall_s'] / 60:.2f} / {f['train_s'] / 60:.2f} ({f['compile_s']:.0f}) | "
            f"{f['steps_per_s']:.0f} | {f['peak_gib_train']:.2f} ({f['peak_kind']}, training) | {f['eval_views']} | {f['psnr']:.2f} | "
            f"{f['ssim']:.4f} | {args.preset}{f'; time to {reached}' if reached else ''}"
            f"{f'; events: step, wait for its step / all compiles on the loop (s): {waits}' if waits else ''}"
            f"{f'; {args.note}' if args.note else ''} |"
        ],
    )
    return figures


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
