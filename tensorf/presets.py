"""Named starting points for train_lego.py; any option can still be overridden on the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tensorf.config import DataConfig, OptimConfig, TensoRFConfig, TrainConfig

# Official lego recipe: VM-192 (16/48 components), 128^3 -> 300^3, batch 4096, 30k steps.
LEGO = TrainConfig()

# The project's own scene (64x64 views): small grid and few steps so a 2-core CPU finishes in
# a few minutes. The box hugs the generated geometry (GEOMETRY_BOUNDS) with a margin.
GENERATED = TrainConfig(
    run_dir=Path("runs/generated"),
    steps=1500,
    batch_size=1024,
    log_every=50,
    eval_every=500,
    checkpoint_every=500,
    data=DataConfig(path=Path("data/generated"), generate=True),
    model=TensoRFConfig(
        aabb=((-1.0, -1.0, -0.7), (1.0, 1.0, 1.0)),
        n_voxels_init=32**3,
        n_voxels_final=80**3,
        upsample_steps=(200, 400, 600, 800),
        appearance_components=(24, 24, 24),
        density_components=(8, 8, 8),
        max_samples=128,
        appearance_samples=16,
    ),
    optim=OptimConfig(),
)

PRESETS: dict[str, tuple[str, TrainConfig]] = {
    "lego": ("official TensoRF lego recipe (GPU-sized)", LEGO),
    "generated": ("the project's generated scene, CPU-sized (minutes)", GENERATED),
}


def with_run_dir(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    return dataclasses.replace(cfg, run_dir=run_dir)
