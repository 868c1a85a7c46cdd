"""TensoRF, NeRF, JaxNeRF+ and mip-NeRF trained on the same lego views for the same wall-clock budget
(or the same number of steps).

    python benchmarks/compare_models.py [--minutes 20] [--models tensorf nerf jaxnerf-plus]
                                        [--run-root runs/compare] [--dataset-path DIR]
    python benchmarks/compare_models.py --models nerf mipnerf --steps 400   # mip-NeRF against NeRF
    # on a GPU: full size, the published batches and TensoRF's official recipe
    python benchmarks/compare_models.py --minutes 1 --downscale 1 --tensorf-preset lego \
        --nerf-batch 4096 --jaxnerf-plus-batch 4096
    # half precision against float32 at equal steps
    python benchmarks/compare_models.py --models nerf jaxnerf-plus --steps 1000 --dtypes float32 bfloat16

Each model trains in its own spawned process (so that its peak memory and its device are its
own) on lego's train split at 200x200 (`--downscale 4`) for `--minutes` of wall-clock time, its
schedule stretched over the budget as in lego_cpu.py, then renders the same val views. With `--steps N` every model trains N
steps instead, its recipe compressed to them (see `model_config`). With several `--dtypes` each
model trains once in each compute dtype. Prints and appends to benchmarks/results.md one table:
steps, rays/s, val PSNR / SSIM / LPIPS, parameter count, checkpoint size, peak memory (the
accelerator's, or the process's RSS on a CPU), with the published lego test figures beside it.

The NeRF family runs its published architecture and learning-rate recipe (tensorf/presets.py).
The default batches are smaller than the published 4096 rays, because a 2-core CPU takes seconds
for one such step and the budget would buy a handful of them (`--nerf-batch`), and because
JaxNeRF+'s activations for 1024 rays (768 samples x 512 wide) outgrow 24 GB of memory.

A model whose RUN_ROOT/<model>/compare.json exists is not trained again: its figures are reused,
so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import multiprocessing
import signal
import sys
from pathlib import Path
from typing import Literal

import jax
import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import DEFAULT_LEGO, ROOT, add_rows, device_name, peak_memory_gib  # noqa: E402
from tensorf.config import TrainConfig  # noqa: E402
from tensorf.data.blender import load_blender  # noqa: E402
from tensorf.errors import UserError, exit_on_user_error  # noqa: E402
from tensorf.presets import JAXNERF_PLUS, LEGO, LEGO_CPU, MIPNERF, NERF  # noqa: E402

ModelName = Literal["tensorf", "nerf", "jaxnerf-plus", "mipnerf"]
Dtype = Literal["float32", "bfloat16", "float16"]

# Published lego test PSNR (shared/README.md): TensoRF paper Table 1; NeRF paper; JaxNeRF README;
# SNeRG README for JaxNeRF+. mip-NeRF's per-scene lego figure is not in a source this project can
# read; its single-scale Blender mean is (google/mipnerf scripts/summarize.ipynb, "roughly the
# Mip-NeRF row of Table 2"), beside NeRF's and JaxNeRF's means from the JaxNeRF README.
PUBLISHED = {"tensorf": "36.46 (VM-192, 30k steps)", "nerf": "32.54 (NeRF); 33.28 (JaxNeRF)",
             "jaxnerf-plus": "37.23",
             "mipnerf": "Blender mean 33.09 (NeRF 31.01, JaxNeRF 31.69); lego not quoted"}
LABEL = {"tensorf": "TensoRF", "nerf": "NeRF", "jaxnerf-plus": "JaxNeRF+", "mipnerf": "mip-NeRF"}


@dataclasses.dataclass(frozen=True)
class Args:
    """Equal-budget comparison of the model families on lego 200x200; one results table."""

    minutes: float = 20.0
    """Wall-clock training budget of each model."""
    steps: int | None = None
    """Train every model this many steps instead of --minutes (an equal-steps comparison). The NeRF
    family's recipes are compressed to them: the learning rate decays over the N steps and the
    warm-up keeps its share of the recipe. TensoRF's step schedule has no such compression, so
    it is refused here."""
    models: tuple[ModelName, ...] = ("tensorf", "nerf", "jaxnerf-plus")
    """Which models to train, in this order."""
    run_root: Path = Path("runs/compare")
    """Each model's run directory is RUN_ROOT/<model>."""
    dataset_path: Path = DEFAULT_LEGO
    """Blender-format lego folder (train and val splits)."""
    downscale: int = 4
    """Image downscale factor (4: 200x200; 1: 800x800, the published size)."""
    tensorf_preset: Literal["lego-cpu", "lego"] = "lego-cpu"
    """TensoRF's recipe: lego-cpu (96^3 -> 192^3 voxels, batch 2048), or lego (the official one:
    128^3 -> 300^3, batch 4096), stretched over the budget either way."""
    dtypes: tuple[Dtype, ...] = ("float32",)
    """Compute dtypes (model.compute_dtype): each model trains once in each."""
    eval_views: tuple[int, ...] = (0, 50)
    """Val views every model renders (indices into transforms_val.json). Two, because JaxNeRF+
    takes about 7 minutes to render one 200x200 view on a 2-core CPU."""
    nerf_batch: int = 1024
    """Rays per step for NeRF and mip-NeRF (published: 4096)."""
    jaxnerf_plus_batch: int = 256
    """Rays per step for JaxNeRF+ (published: 2048)."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the table is appended to."""
    figures_dir: Path | None = None
    """Also write each model's figures here, as <model>[-<dtype>].json, as soon as it is measured
    (gpu_check.sh: its OUT_DIR, which a device call returns even when the call is cut short).
    Put back as RUN_ROOT/<model>[-<dtype>]/compare.json, they are not measured again."""


def run_name(name: ModelName, dtype: str) -> str:
    return name if dtype == "float32" else f"{name}-{dtype}"


def model_config(args: Args, name: ModelName, dtype: str = "float32") -> TrainConfig:
    tensorf = LEGO if args.tensorf_preset == "lego" else LEGO_CPU
    base = {"tensorf": tensorf, "nerf": NERF, "jaxnerf-plus": JAXNERF_PLUS, "mipnerf": MIPNERF}[name]
    batch = {"tensorf": base.batch_size, "nerf": args.nerf_batch, "jaxnerf-plus": args.jaxnerf_plus_batch,
             "mipnerf": args.nerf_batch}[name]
    if args.steps is not None:
        # The NeRF family's only step-denominated setting is the warm-up; the decay spans cfg.steps.
        warmup = round(base.optim.lr_delay_steps * args.steps / base.steps)
        base = dataclasses.replace(base, steps=args.steps,
                                   optim=dataclasses.replace(base.optim, lr_delay_steps=warmup))
    return dataclasses.replace(
        base,
        run_dir=args.run_root / run_name(name, dtype),
        time_budget_minutes=args.minutes if args.steps is None else None,
        batch_size=batch,
        render_chunk=min(base.render_chunk, 4096),
        log_every=10 if name != "tensorf" else base.log_every,
        eval_every=0,
        checkpoint_every=0,  # one checkpoint, at the end: its size is the table's
        progress=False,
        data=dataclasses.replace(base.data, path=args.dataset_path, downscale=args.downscale, eval_split="val",
                                 eval_views=args.eval_views),
        model=dataclasses.replace(base.model, compute_dtype=dtype),
    )


def checkpoint_mib(run_dir: Path) -> float:
    steps = [p for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    newest = max(steps, key=lambda p: int(p.name))
    return sum(f.stat().st_size for f in newest.rglob("*") if f.is_file()) / 2**20


def run_one(args: Args, name: ModelName, dtype: Dtype) -> None:
    """Train and evaluate one model in this process; its figures go to RUN/compare.json."""
    from tensorf.training.loop import train

    with exit_on_user_error():
        cfg = model_config(args, name, dtype)
        result = train(cfg)
    m = result.eval_metrics
    first = load_blender(args.dataset_path, "val", args.downscale, views=args.eval_views[:1]).images[0]
    peak, peak_kind = peak_memory_gib()
    figures = {
        "model": name,
        "preset": args.tensorf_preset if name == "tensorf" else None,
        "dtype": dtype,
        "device": device_name(),
        "image": f"{first.shape[1]}x{first.shape[0]}",
        "minutes": result.elapsed_s / 60.0,
        "batch": cfg.batch_size,
        "steps": result.steps,
        "rays_per_s": result.steps * cfg.batch_size / result.elapsed_s,
        "psnr": m["psnr"],
        "ssim": m["ssim"],
        "lpips": m.get("lpips"),
        "lpips_alex": m.get("lpips_alex"),
        "params": int(sum(np.size(x) for x in jax.tree.leaves(result.params))),
        "checkpoint_mib": checkpoint_mib(Path(cfg.run_dir)),
        "peak_gib": peak,
        "peak_kind": peak_kind,
        "eval_views": list(args.eval_views),
    }
    (Path(cfg.run_dir) / "compare.json").write_text(json.dumps(figures, indent=2))


def row(f: dict) -> str:
    lp = "n/a" if f["lpips"] is None else f"{f['lpips']:.4f} / {f['lpips_alex']:.4f}"
    label = LABEL[f["model"]] + (f" ({f['preset']} preset)" if f["model"] == "tensorf" else "")
    return (f"| {datetime.date.today()} | {label} | {f['dtype']} | {f['minutes']:.1f} | {f['batch']} | {f['steps']} | "
            f"{f['rays_per_s']:.0f} | {f['psnr']:.2f} | {f['ssim']:.4f} | {lp} | {f['params'] / 1e6:.2f} M | "
            f"{f['checkpoint_mib']:.1f} | {f['peak_gib']:.1f} ({f['peak_kind']}) | {PUBLISHED[f['model']]} |")


def main(args: Args) -> None:
    if args.steps is not None and "tensorf" in args.models:
        raise UserError("--steps compresses the NeRF family's recipes only; compare TensoRF by --minutes, or "
                        "leave it out of --models")
    figures = []
    for name in args.models:
        for dtype in args.dtypes:
            done = args.run_root / run_name(name, dtype) / "compare.json"
            measured = json.loads(done.read_text()) if done.is_file() else {}
            if "device" in measured:  # older ones lack columns: measured again
                print(f"== {name} ({dtype}): measured before, {done}", flush=True)
            else:
                print(f"== {name} ({dtype}): training in a process of its own", flush=True)
                # Spawned, not forked: this process has imported JAX, whose runtime must not be forked.
                child = multiprocessing.get_context("spawn").Process(target=run_one, args=(args, name, dtype))
                child.start()
                # gpu_check.sh's deadline (timeout's SIGTERM) ends the training too, not only this process.
                signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), sys.exit(143)))
                child.join()
                code = child.exitcode
                if code != 0:
                    why = " (killed: out of memory? lower its batch)" if code == -9 else ""
                    raise UserError(f"training {name} ({dtype}) failed with exit status {code}{why}; its output is "
                                    f"above. The models measured so far are kept in {args.run_root}; run again to "
                                    "continue")
                measured = json.loads(done.read_text())
            if args.figures_dir is not None:
                args.figures_dir.mkdir(parents=True, exist_ok=True)
                (args.figures_dir / f"{run_name(name, dtype)}.json").write_text(json.dumps(measured, indent=2))
            figures.append(measured)
    rows = [row(f) for f in figures]
    print("\n".join(rows))
    views = ", ".join(f"r_{i}" for i in args.eval_views)
    equal = "equal wall clock" if args.steps is None else "equal steps"
    add_rows(
        args.results,
        f"## compare_models.py (lego {figures[0]['image']} train split, val {views}, {equal}, {figures[0]['device']})",
        "| date | model | compute dtype | minutes | batch | steps | train rays/s | val PSNR | val SSIM | LPIPS VGG / Alex | "
        "params | checkpoint MiB | peak memory GiB | published lego test PSNR |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        rows,
    )


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
