"""Load a dataset as the config describes it: training and eval views, and the scene.

Each format's loader returns posed views and the scene it implies (box, near/far, background,
ray space); the config's overrides are applied here, so every format takes them the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tensorf.config import DataConfig
from tensorf.data import blender, llff, nerfstudio
from tensorf.data.generated import GenerateConfig, generate
from tensorf.data.views import Scene, Views
from tensorf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """render_path (N, 4, 4): the format's own camera path for viewers (LLFF's spiral), or None."""

    train: Views
    eval: Views
    eval_split: str
    scene: Scene
    format: str
    render_path: np.ndarray | None = None


def ensure_generated(cfg: DataConfig) -> None:
    """Write the generated scene to cfg.path when asked to and it is not there yet."""
    if cfg.generate and not (Path(cfg.path) / f"transforms_{cfg.train_split}.json").is_file():
        generate(GenerateConfig(out=Path(cfg.path)))


def detect_format(cfg: DataConfig) -> str:
    """cfg.format, or the layout found in cfg.path."""
    if cfg.format != "auto":
        return cfg.format
    root = Path(cfg.path)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist; {blender.LEGO_HINT}")
    if any(root.glob("transforms_*.json")):
        return "blender"
    if (root / "poses_bounds.npy").is_file():
        return "llff"
    if (root / "transforms.json").is_file():
        return "nerfstudio"
    raise UserError(f"{root}: no transforms_<split>.json (Blender), poses_bounds.npy (LLFF) or transforms.json "
                    "(nerfstudio / instant-ngp) here; point --data.path at a dataset folder or give --data.format")


def load_dataset(cfg: DataConfig) -> Dataset:
    """Training and eval views and the scene, with the config's overrides of the format's own
    bounds applied; writes the generated scene first when asked to."""
    ensure_generated(cfg)
    fmt = detect_format(cfg)
    render_path = None
    if cfg.ndc and fmt != "llff":
        raise UserError("--data.ndc is supported for LLFF captures only (their poses_bounds.npy gives the near plane)")
    if cfg.contraction != "none" and (cfg.ndc or (fmt == "llff" and cfg.ndc is None)):
        raise UserError("--data.contraction is for unbounded scenes and NDC rays are for forward-facing ones; "
                        "give --data.ndc False to contract an LLFF capture")
    if fmt == "blender":
        train = blender.load_blender(cfg.path, cfg.train_split, cfg.downscale)
        have = blender.available_splits(cfg.path)
        # The configured eval split, or val when the dataset has no such split (the shared lego).
        eval_split = "val" if cfg.eval_split not in have and "val" in have else cfg.eval_split
        eval_views = blender.load_blender(cfg.path, eval_split, cfg.downscale, cfg.eval_views)
        scene = blender.SCENE
    elif fmt == "llff":
        train, eval_views, scene, render_path = llff.load_llff(cfg.path, cfg.downscale, cfg.hold_every,
                                                               cfg.ndc is not False, cfg.eval_views)
        eval_split = "test"
    else:
        train, eval_views, scene, eval_split = nerfstudio.load_transforms(
            cfg.path, cfg.downscale, cfg.hold_every, cfg.eval_views, 1.0 if cfg.background is None else cfg.background)
    return Dataset(train=train, eval=eval_views, eval_split=eval_split, scene=scene_for(cfg, scene), format=fmt,
                   render_path=render_path)


def load_eval_views(cfg: DataConfig) -> tuple[Views, str]:
    """Only the eval views (and their split's name): what tools that judge a run read."""
    if detect_format(cfg) == "blender":
        return blender.load_blender(cfg.path, cfg.eval_split, cfg.downscale, cfg.eval_views), cfg.eval_split
    data = load_dataset(cfg)
    return data.eval, data.eval_split


UNBOUNDED_BOX = ((-2.0, -2.0, -2.0), (2.0, 2.0, 2.0))  # contracted space: radius 2 in either norm
UNBOUNDED_FAR = 1000.0  # contracts to within 0.001 of the boundary


def scene_for(cfg: DataConfig, default: Scene) -> Scene:
    """The format's scene with the config's overrides (a contracted scene's box and far plane
    are the contracted space's unless given)."""
    contraction = None if cfg.contraction == "none" else cfg.contraction
    if contraction:
        default = dataclasses.replace(default, aabb=UNBOUNDED_BOX, near_far=(default.near_far[0], UNBOUNDED_FAR))
    return Scene(
        aabb=default.aabb if cfg.aabb is None else cfg.aabb,
        near_far=default.near_far if cfg.near_far is None else cfg.near_far,
        background=default.background if cfg.background is None else cfg.background,
        ndc=default.ndc,
        contraction=contraction,
    )
