"""Camera pose refinement (--camera-opt.mode SO3xR3) on the generated scene with pose errors: the
training cameras turned by a few degrees and moved a little (tensorf.data.generated's
perturb_training_poses), the held-out views' poses exact. Three runs at the trained_run
fixture's sizes (tests/conftest.py): true poses, perturbed poses, perturbed poses refined.

    python benchmarks/pose_refine.py [--size 64] [--degrees 3] [--shift 0.1] [--steps 400]

Prints and appends a row per run to benchmarks/results.md: training and held-out PSNR (as the
run judges them: with refinement, the held-out cameras carried along with the training views'
corrections; and at their poses as given) and the training cameras' mean rotation and position
errors against the true poses.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import ROOT, add_rows, short_run_model  # noqa: E402
from tensorf.config import CameraOptConfig, DataConfig, TrainConfig  # noqa: E402
from tensorf.data.dataset import load_eval_views  # noqa: E402
from tensorf.data.generated import GenerateConfig, generate, perturb_training_poses  # noqa: E402
from tensorf.eval import evaluate_views  # noqa: E402
from tensorf.training.cameras import pose_errors  # noqa: E402
from tensorf.training.loop import train  # noqa: E402

MODEL, BOX = short_run_model()


@dataclasses.dataclass(frozen=True)
class Args:
    """True poses, perturbed poses and perturbed poses refined, on the generated scene."""

    size: int = 64
    """Image size of the generated scene (square)."""
    degrees: float = 3.0
    """Each training camera turned by this much about a random axis."""
    shift: float = 0.1
    """...and moved by this much (world units; the cameras sit 4 from the object)."""
    steps: int = 400
    """Training steps per run."""
    run_root: Path = Path("runs/pose_refine_bench")
    """Runs go to RUN_ROOT/<name>; the scenes to RUN_ROOT/scene and RUN_ROOT/perturbed."""
    results: Path = ROOT / "benchmarks" / "results.md"
    """Markdown file the rows are appended to."""


def main(args: Args) -> None:
    scene = args.run_root / "scene"
    if not (scene / "transforms_train.json").is_file():
        generate(GenerateConfig(out=scene, size=args.size, n_train=24, n_val=4, n_test=4))
    perturbed = args.run_root / "perturbed"
    shutil.rmtree(perturbed, ignore_errors=True)
    shutil.copytree(scene, perturbed)
    truth = perturb_training_poses(perturbed, args.degrees, args.shift)
    given = np.asarray([f["transform_matrix"] for f in json.loads((perturbed / "transforms_train.json").read_text())["frames"]])
    runs = {"true poses": (scene, "off"), "perturbed poses": (perturbed, "off"),
            "perturbed poses, refined (SO3xR3)": (perturbed, "SO3xR3")}
    rows = []
    for name, (data, mode) in runs.items():
        run = args.run_root / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        cfg = TrainConfig(run_dir=run, steps=args.steps, batch_size=512, log_every=100, eval_every=0, checkpoint_every=0,
                          render_chunk=1024, eval_lpips=False, progress=False, data=DataConfig(path=data, aabb=BOX),
                          model=MODEL, camera_opt=CameraOptConfig(mode=mode))
        t0 = time.perf_counter()
        result = train(cfg, overwrite=True)
        minutes = (time.perf_counter() - t0) / 60
        # Training judged the held-out views carried along with the refinement (cameras.carried);
        # beside it, the held-out views at their poses as given (exact here).
        as_given = result.eval_metrics["psnr"] if mode == "off" else evaluate_views(
            result.model, result.params, load_eval_views(cfg.data)[0], run, "given", 1024, verbose=False, write=False,
            with_lpips=False)["psnr"]
        if data == scene:
            errors = "0 | 0"
        else:
            refined = run / "cameras_refined.json"
            c2w = np.asarray(json.loads(refined.read_text())["c2w"]) if mode != "off" else given
            errors = "{:.2f} | {:.3f}".format(*pose_errors(c2w, truth))
        rows.append(f"| {datetime.date.today()} | {name} | {args.size} | {args.degrees:g} / {args.shift:g} | {args.steps} | "
                    f"{result.train_psnr:.2f} | {result.eval_metrics['psnr']:.2f} | {as_given:.2f} | {errors} | {minutes:.1f} |")
        print(rows[-1], flush=True)
    add_rows(
        args.results,
        "## pose_refine.py (generated scene, training poses perturbed, held-out poses exact, 2-core CPU)",
        "| date | run | size | perturbation (deg / shift) | steps | train PSNR | test PSNR | test PSNR, poses as given | "
        "rotation error (deg) | position error | minutes (with eval) |\n|---|---|---|---|---|---|---|---|---|---|---|",
        rows,
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
