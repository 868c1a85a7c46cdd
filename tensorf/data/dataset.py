"""Load a dataset as the config describes it: training and eval views, and the scene."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tensorf.config import DataConfig
from tensorf.data import blender
from tensorf.data.generated import GenerateConfig, generate
from tensorf.data.views import Scene, Views


@dataclasses.dataclass(frozen=True)
class Dataset:
    train: Views
    eval: Views
    eval_split: str
    scene: Scene


def ensure_generated(cfg: DataConfig) -> None:
    """Write the generated scene to cfg.path when asked to and it is not there yet."""
    if cfg.generate and not (Path(cfg.path) / f"transforms_{cfg.train_split}.json").is_file():
        generate(GenerateConfig(out=Path(cfg.path)))


def load_dataset(cfg: DataConfig) -> Dataset:
    """Training and eval views and the scene, with the config's overrides of the format's own
    bounds applied; writes the generated scene first when asked to."""
    ensure_generated(cfg)
    train = blender.load_blender(cfg.path, cfg.train_split, cfg.downscale)
    have = blender.available_splits(cfg.path)
    # The configured eval split, or val when the dataset has no such split (the shared lego).
    eval_split = "val" if cfg.eval_split not in have and "val" in have else cfg.eval_split
    eval_views = blender.load_blender(cfg.path, eval_split, cfg.downscale, cfg.eval_views)
    scene = scene_for(cfg, blender.SCENE)
    return Dataset(train=train, eval=eval_views, eval_split=eval_split, scene=scene)


def scene_for(cfg: DataConfig, default: Scene) -> Scene:
    """The format's scene with the config's overrides."""
    return Scene(
        aabb=default.aabb if cfg.aabb is None else cfg.aabb,
        near_far=default.near_far if cfg.near_far is None else cfg.near_far,
        background=default.background if cfg.background is None else cfg.background,
    )
