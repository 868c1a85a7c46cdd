"""A run directory: what training writes and every tool reads back.

    RUN/config.json     the resolved config (auto choices and the scene's bounds decided)
    RUN/cameras.json    the training cameras (renderers place new views from them), and the
                        format's own camera path when it has one (LLFF's spiral)
    RUN/checkpoints/    orbax checkpoints (tensorf.checkpoint)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from tensorf import config as cfgmod
from tensorf.checkpoint import Checkpointer
from tensorf.config import TrainConfig
from tensorf.data.cameras import Cameras
from tensorf.data.views import Scene
from tensorf.errors import UserError
from tensorf.models.base import Model, build_model


def resolved_config(cfg: TrainConfig, scene: Scene, backend: str | None = None) -> TrainConfig:
    """The config as a run records it: the dataset's scene bounds filled in and the model's
    backend-dependent `auto` choices decided, so the run can be restored without guessing."""
    data = dataclasses.replace(cfg.data, aabb=scene.aabb, near_far=scene.near_far, background=scene.background,
                               ndc=scene.ndc)
    model = cfgmod.resolve_backend(cfg.model, backend or jax.default_backend())
    return dataclasses.replace(cfg, data=data, model=model)


def scene_of(cfg: TrainConfig) -> Scene:
    d = cfg.data
    if d.aabb is None or d.near_far is None or d.background is None:
        raise UserError("the run's config.json lacks the scene bounds (data.aabb, near_far, background); "
                        "it was written by an older version: add them or retrain")
    return Scene(aabb=d.aabb, near_far=d.near_far, background=d.background, ndc=bool(d.ndc))


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


def write_cameras(run_dir: Path, cameras: Cameras, render_path: np.ndarray | None = None) -> None:
    body = cameras.to_json()
    if render_path is not None:
        body["render_path"] = np.asarray(render_path).tolist()
    (Path(run_dir) / "cameras.json").write_text(json.dumps(body))


def load_render_path(run_dir: Path) -> np.ndarray | None:
    """The dataset's own camera path (N, 4, 4) recorded with the run (LLFF: a spiral), or None."""
    path = Path(run_dir) / "cameras.json"
    body = json.loads(path.read_text()) if path.is_file() else {}
    return None if body.get("render_path") is None else np.asarray(body["render_path"], np.float32)


def load_cameras(run_dir: Path, cfg: TrainConfig | None = None) -> Cameras:
    """Training cameras of a run: RUN/cameras.json, else (with cfg) the run's dataset."""
    path = Path(run_dir) / "cameras.json"
    if not path.is_file() and cfg is not None and Path(cfg.data.path).is_dir():
        from tensorf.data.dataset import load_dataset

        return load_dataset(cfg.data).train.cameras
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
