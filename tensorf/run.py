"""A run directory: what training writes and every tool reads back.

    RUN/config.json     the resolved config (auto choices and the scene's bounds decided)
    RUN/cameras.json    the training cameras (renderers place new views from them)
    RUN/checkpoints/    orbax checkpoints (tensorf.checkpoint)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax

from tensorf import config as cfgmod
from tensorf.checkpoint import Checkpointer
from tensorf.config import TrainConfig
from tensorf.data.blender import load_blender
from tensorf.data.cameras import Cameras
from tensorf.data.views import Scene
from tensorf.errors import UserError
from tensorf.models.base import Model, build_model


def resolved_config(cfg: TrainConfig, scene: Scene, backend: str | None = None) -> TrainConfig:
    """The config as a run records it: the dataset's scene bounds filled in and the model's
    backend-dependent `auto` choices decided, so the run can be restored without guessing."""
    data = dataclasses.replace(cfg.data, aabb=scene.aabb, near_far=scene.near_far, background=scene.background)
    model = cfgmod.resolve_backend(cfg.model, backend or jax.default_backend())
    return dataclasses.replace(cfg, data=data, model=model)


def scene_of(cfg: TrainConfig) -> Scene:
    d = cfg.data
    if d.aabb is None or d.near_far is None or d.background is None:
        raise UserError("the run's config.json lacks the scene bounds (data.aabb, near_far, background); "
                        "it was written by an older version: add them or retrain")
    return Scene(aabb=d.aabb, near_far=d.near_far, background=d.background)


def write_config(cfg: TrainConfig) -> None:
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.run_dir) / "config.json").write_text(cfgmod.to_json(cfg))


def load_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{path} not found; {run_dir} is not a run directory (train one with train_lego.py)")
    try:
        return cfgmod.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: unreadable run config ({str(e).splitlines()[0]}); restore it from a backup") from None


def write_cameras(run_dir: Path, cameras: Cameras) -> None:
    (Path(run_dir) / "cameras.json").write_text(json.dumps(cameras.to_json()))


def load_cameras(run_dir: Path, cfg: TrainConfig | None = None) -> Cameras:
    """Training cameras of a run: RUN/cameras.json, else (with cfg) the run's dataset."""
    path = Path(run_dir) / "cameras.json"
    if not path.is_file() and cfg is not None and Path(cfg.data.path).is_dir():
        return load_blender(cfg.data.path, cfg.data.train_split, cfg.data.downscale).cameras
    if not path.is_file():
        raise UserError(f"{path} not found; the run directory is incomplete (train it with train_lego.py)")
    try:
        return Cameras.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: unreadable camera file ({e}); re-run training to rewrite it") from None


def restore_run(run_dir: Path, step: int | None = None, best: bool = False) -> tuple[TrainConfig, Model, Any, dict]:
    """(config, model, params, meta) of a run at a checkpoint (latest when step is None), or at
    the one --keep-best kept (best)."""
    cfg = load_config(run_dir)
    model = build_model(cfg.model, scene_of(cfg))
    ckpt = Checkpointer(run_dir, read_only=True, folder="best" if best else "checkpoints")
    state, meta = ckpt.restore(step, lambda m: {"params": model.init(jax.random.key(0), m["model_state"])})
    ckpt.close()
    return cfg, model.for_state(meta["model_state"]), state["params"], meta
