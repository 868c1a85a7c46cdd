"""Load a dataset as the config describes it: training and eval views, and the scene.

Each format's loader returns posed views and the scene it implies (box, near/far, background,
ray space); the config's overrides are applied here, so every format takes them the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tensorf import option_ranges
from tensorf.config import DataConfig
from tensorf.data import blender, colmap, llff, metashape, nerfstudio, opensfm, polycam, record3d
from tensorf.data.capture import load_capture
from tensorf.data.capture_kind import CaptureKind
from tensorf.data.generated import GenerateConfig, generate
from tensorf.data.images import IMAGE_SUFFIXES, OTHER_PHOTO_SUFFIXES, VIDEO_SUFFIXES, auto_downscale, listed
from tensorf.data.turntable import Turntable
from tensorf.data.views import Scene, Views
from tensorf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """render_path (N, 4, 4): the format's own camera path for viewers (a forward-facing capture's
    spiral), or None; kind: what a capture was read as (None for Blender scenes); turntable:
    whether a 360 capture was read as a turntable (None: not considered)."""

    train: Views
    eval: Views
    eval_split: str
    scene: Scene
    format: str
    render_path: np.ndarray | None = None
    kind: CaptureKind | None = None
    turntable: Turntable | None = None
    downscale: int = 1
    """The factor the images were read at (--data.downscale, or what auto chose)."""
    to_source: np.ndarray | None = None
    """(4, 4) similarity from the training world to the capture file's own (COLMAP model,
    Metashape chunk, transforms.json, poses_bounds.npy), or None: the same (Blender scenes)."""

    def describe(self, path) -> str:
        """What a capture at `path` was read as, and the bounds chosen from its cameras (not given),
        with the flags that change them: printed when training starts."""
        sc, lens = self.scene, self.train.cameras.model
        lines = [f"{self.format} capture {path}: {self.kind.describe()}"]
        if self.turntable:
            lines.append(f"  {self.turntable.describe()}")
        cams = self.train.cameras
        sizes = " and ".join(f"{w}x{h}" for w, h in sorted(set(zip(cams.width.tolist(), cams.height.tolist()))))
        if self.downscale > 1:
            sizes += f" (downscale {self.downscale})"
        lines.append(
            f"  {len(self.train.images)} train and {len(self.eval.images)} {self.eval_split} views of "
            f"{sizes}{f', {lens} lens distortion' if lens != 'pinhole' else ''}; "
            f"{'NDC rays, ' if sc.ndc else ''}{f'{sc.contraction} contraction, ' if sc.contraction else ''}"
            f"box {np.round(sc.aabb, 3).tolist()}, near/far {np.round(sc.near_far, 3).tolist()} "
            "(override with --data.aabb / --data.near-far / --data.contraction)")
        if self.train.depths is not None:
            have = int((self.train.depths > 0).any(axis=(1, 2)).sum())
            lines.append(f"  depth maps: {have} of {len(self.train.images)} training views (--data.depth: the DS-NeRF "
                         "depth loss, --model.depth-weight)")
        if sc.contraction and self.turntable and self.turntable.on:
            # The contracted shell then holds only floaters, and the subject gets a fraction of the
            # grid: on head the fitted box won (benchmarks/results.md, captures_cpu.py).
            lines.append("  note: a turntable's room is in its background images, so nothing lies beyond the box "
                         "to contract; --data.contraction none fits the box to the subject")
        return "\n".join(lines)


def ensure_generated(cfg: DataConfig) -> None:
    """Write the generated scene to cfg.path when asked to and it is not there yet: into a new or
    empty folder only, never beside someone's own files (`--preset generated --data.path
    CAPTURE` wrote the scene into CAPTURE and then trained on it in place of the capture)."""
    root = Path(cfg.path)
    if not cfg.generate or (root / f"transforms_{cfg.train_split}.json").is_file():
        return
    # What an interrupted generation leaves is written over, and hidden files (Finder's .DS_Store);
    # anything else is someone's.
    generated = {"train", "val", "test", *(f"transforms_{split}.json" for split in ("train", "val", "test"))}
    if root.is_dir() and any(e.name not in generated and not e.name.startswith(".") for e in root.iterdir()):
        raise UserError(f"{root}: holds files but not the generated scene, which --preset generated writes there "
                        f"(--data.generate); train a capture with a preset of its kind (e.g. --preset lego-cpu "
                        f"--data.path {root}), or give --data.path a new folder")
    generate(GenerateConfig(out=root))


def detect_format(cfg: DataConfig) -> str:
    """cfg.format, or the layout found in cfg.path."""
    if cfg.format != "auto":
        return cfg.format
    root = Path(cfg.path)
    if root.is_file():
        raise UserError(_hint_or_none(_file_hint, root) or f"{root} is a file; point --data.path at a dataset folder")
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist; {blender.LEGO_HINT}")
    fmt = sniff_format(root)
    if fmt is None:
        raise UserError(f"{root}: no transforms_<split>.json (Blender), poses_bounds.npy (LLFF), transforms.json "
                        "(nerfstudio / instant-ngp), sparse/0/ (COLMAP), cameras.xml (Metashape), reconstruction.json "
                        "(OpenSfM, OpenDroneMap), keyframes/ (Polycam) or metadata.json + rgb/ (Record3D) here; "
                        + (_hint_or_none(_nearby_hint, root) or _hint_or_none(_unposed_hint, root)
                           or "point --data.path at a dataset folder or give --data.format"))
    return fmt


def sniff_format(root: Path) -> str | None:
    """The dataset layout of the folder root, or None."""
    if any(root.glob("transforms_*.json")):
        return "blender"
    if (root / "poses_bounds.npy").is_file():
        return "llff"
    if (root / "transforms.json").is_file():
        return "nerfstudio"
    if colmap.find_model(root) is not None:
        return "colmap"
    if metashape.find_xml(root) is not None:
        return "metashape"
    if opensfm.find_reconstruction(root) is not None:
        return "opensfm"
    if polycam.find_keyframes(root) is not None:
        return "polycam"
    if record3d.is_record3d(root):
        return "record3d"
    return None


def _hint_or_none(hint, root: Path) -> str | None:
    """hint(root), or None where looking around root meets a folder it may not read: the error
    it adds to stays one line."""
    try:
        return hint(root)
    except OSError:
        return None


def _nearby_hint(root: Path) -> str | None:
    """The way to a dataset one folder away: root is a folder inside one (a capture's images/ or
    images_8/, its sparse/), or holds datasets (data/nerf_synthetic rather than
    data/nerf_synthetic/lego)."""
    if fmt := sniff_format(root.resolve().parent):
        return f"{root} is a folder of the {FORMAT_NAMES[fmt]} dataset {root.parent}: point --data.path there"
    found = [(sub.name, fmt) for sub in sorted(root.iterdir())[:200] if sub.is_dir() and (fmt := sniff_format(sub))]
    if found:
        listed = ", ".join(f"{name} ({FORMAT_NAMES[fmt]})" for name, fmt in found[:6])
        more = f" and {len(found) - 6} more" if len(found) > 6 else ""
        which = f"its folders {listed}{more} are datasets" if len(found) > 1 else f"its folder {listed} is a dataset"
        return f"{which}: point --data.path at {'one, e.g. ' if len(found) > 1 else ''}{root / found[0][0]}"
    return None


FORMAT_NAMES = {"blender": "Blender", "llff": "LLFF", "nerfstudio": "nerfstudio", "colmap": "COLMAP",
                "metashape": "Metashape", "opensfm": "OpenSfM", "polycam": "Polycam", "record3d": "Record3D"}


def _file_hint(path: Path) -> str:
    """What to give --data.path instead of the file `path`: the dataset it belongs to, or poses
    first for a video or a photo of no dataset."""
    for folder in (path.parent, path.parent.parent):  # transforms.json, images/0001.jpg
        if (fmt := sniff_format(folder.resolve())) is not None:
            return f"{path} is a file of the {FORMAT_NAMES[fmt]} dataset {folder}: point --data.path at that folder"
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES + IMAGE_SUFFIXES + OTHER_PHOTO_SUFFIXES:
        what, source = ("a video", path) if suffix in VIDEO_SUFFIXES else ("a photo", path.parent)
        return (f"{path} is {what}, and training needs posed images: recover poses with `python -m tensorf.poses "
                f"{source} --out CAPTURE` (pip install -r requirements-poses.txt), then train on CAPTURE")
    return f"{path} is a file; point --data.path at a dataset folder"


def _unposed_hint(root: Path) -> str | None:
    """The way on for a folder of photos or videos that has no poses yet: tensorf.poses, which
    writes a COLMAP capture this loader reads."""
    for folder in (root, root / "images"):
        if not folder.is_dir():
            continue
        photos = listed(folder, IMAGE_SUFFIXES + OTHER_PHOTO_SUFFIXES)
        videos = listed(folder, VIDEO_SUFFIXES)
        if videos and not photos:
            return (f"{videos[0]} is a video without poses: recover them with `python -m tensorf.poses "
                    f"{videos[0]} --out CAPTURE` (pip install -r requirements-poses.txt), then train on CAPTURE")
        if photos:
            return (f"{folder} holds {len(photos)} photos without poses: recover them with `python -m tensorf.poses "
                    f"{folder} --out CAPTURE` (pip install -r requirements-poses.txt), then train on CAPTURE")
    return None


def load_dataset(cfg: DataConfig) -> Dataset:
    """Training and eval views and the scene, with the config's overrides of the format's own
    bounds applied; writes the generated scene first when asked to."""
    option_ranges.check(cfg, "data")
    ensure_generated(cfg)
    data = _load_dataset(cfg)
    if not cfg.pixel_centers:
        data = dataclasses.replace(data, train=through_pixel_corners(data.train), eval=through_pixel_corners(data.eval))
    if data.scene.ndc:
        data = dataclasses.replace(data, scene=dataclasses.replace(data.scene, ndc_scale=data.train.cameras.ndc.scale))
    return data


def through_pixel_corners(views: Views) -> Views:
    return dataclasses.replace(views, cameras=views.cameras.through_pixel_corners())


def downscale_for(cfg: DataConfig, fmt: str) -> int:
    """cfg.downscale, or the factor auto picks (images.auto_downscale) from a Blender split's first
    image or an LLFF capture's poses_bounds sizes (the other formats' readers pick their own)."""
    if cfg.downscale != "auto":
        return cfg.downscale
    if fmt == "blender":
        sizes = [blender.full_size(cfg.path, cfg.train_split)]
    else:
        sizes = llff.load_poses(Path(cfg.path))[1][:, 1::-1]
    return auto_downscale(sizes, str(cfg.path))


def _load_dataset(cfg: DataConfig) -> Dataset:
    fmt = detect_format(cfg)
    if cfg.ndc and fmt == "blender":
        raise UserError("--data.ndc is for forward-facing captures, and a Blender scene's cameras circle it; drop --data.ndc")
    if cfg.depth and fmt not in ("nerfstudio", "polycam"):
        raise UserError(f"--data.depth reads depth maps from a transforms.json (depth_file_path) or a Polycam export; "
                        f"this capture is {fmt}")
    if cfg.contraction not in ("auto", "none") and cfg.ndc:
        raise UserError("--data.contraction is for unbounded scenes and NDC rays are for forward-facing ones; "
                        "give one of them")
    if fmt == "blender":
        factor = downscale_for(cfg, fmt)
        train = blender.load_blender(cfg.path, cfg.train_split, factor)
        have = blender.available_splits(cfg.path)
        # The default test split, or val when the dataset has none (the shared lego); a split the
        # user named is read or refused, never swapped for another.
        eval_split = "val" if cfg.eval_split == "test" and "test" not in have and "val" in have else cfg.eval_split
        eval_views = blender.load_blender(cfg.path, eval_split, factor, cfg.eval_views)
        return Dataset(train=train, eval=eval_views, eval_split=eval_split, scene=scene_for(cfg, blender.SCENE),
                       format=fmt, downscale=factor)
    if fmt == "llff":
        factor = downscale_for(cfg, fmt)
        loaded = llff.load_llff(cfg.path, factor, cfg.hold_every, cfg.ndc, cfg.eval_views, cfg.kind,
                                cfg.contraction, cfg.turntable)
        if loaded.scene.ndc and cfg.contraction not in ("auto", "none"):
            raise UserError(f"{cfg.path}: --data.contraction is for unbounded scenes, and this capture is "
                            f"{loaded.kind.describe()} with NDC rays; give --data.kind 360 (or --data.ndc False) to contract it")
    else:
        read = {"nerfstudio": nerfstudio.read_transforms, "metashape": metashape.read_metashape,
                "opensfm": opensfm.read_opensfm, "polycam": polycam.read_polycam,
                "record3d": record3d.read_record3d}.get(fmt, colmap.read_colmap)
        background = 1.0 if cfg.background is None else cfg.background
        capture = read(cfg.path, cfg.downscale)
        loaded = load_capture(capture, capture.downscale, cfg.hold_every, cfg.eval_views, background, cfg.kind,
                              cfg.contraction, cfg.turntable, cfg.depth, cfg.ndc)
    return Dataset(train=loaded.train, eval=loaded.eval, eval_split=loaded.eval_split, scene=scene_for(cfg, loaded.scene),
                   format=fmt, render_path=loaded.render_path, kind=loaded.kind, turntable=loaded.turntable,
                   downscale=loaded.downscale, to_source=loaded.to_source)


def load_eval_views(cfg: DataConfig) -> tuple[Views, str]:
    """Only the eval views (and their split's name): what tools that judge a run read."""
    if detect_format(cfg) == "blender":
        views = blender.load_blender(cfg.path, cfg.eval_split, downscale_for(cfg, "blender"), cfg.eval_views)
        return (views if cfg.pixel_centers else through_pixel_corners(views)), cfg.eval_split
    data = load_dataset(cfg)
    return data.eval, data.eval_split


UNBOUNDED_FAR = 1000.0  # contracts to within 0.001 of the boundary


def scene_for(cfg: DataConfig, default: Scene) -> Scene:
    """The format's scene with the config's overrides (a contracted scene's box and far plane
    are the contracted space's unless given)."""
    contraction = default.contraction if cfg.contraction == "auto" else None if cfg.contraction == "none" \
        else cfg.contraction
    if contraction:
        r = 1.0 + cfg.contraction_shell  # contracted space: radius 1 + shell in either norm
        default = dataclasses.replace(default, aabb=((-r,) * 3, (r,) * 3), near_far=(default.near_far[0], UNBOUNDED_FAR))
    return Scene(
        aabb=default.aabb if cfg.aabb is None else cfg.aabb,
        near_far=default.near_far if cfg.near_far is None else cfg.near_far,
        background=default.background if cfg.background is None else cfg.background,
        ndc=default.ndc,
        contraction=contraction,
        shell=cfg.contraction_shell,
    )
