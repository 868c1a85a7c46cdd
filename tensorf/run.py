"""A run directory: what training writes and every tool reads back.

    RUN/config.json     the resolved config (auto choices and the scene's bounds decided)
    RUN/cameras.json    the training cameras (renderers place new views from them), their image
                        files, the eval views' cameras and files, and the format's own camera
                        path when it has one (LLFF's spiral)
    RUN/cameras_refined.json  with --camera-opt.mode, the training cameras as refined (at the end)
    RUN/exposure.json   with --exposure.mode, each training view's learned colour map
    RUN/dataparser_transforms.json  how the capture file's world maps to the run's (nerfstudio's
                        form), so exports can go back to the capture's coordinates
    RUN/background.png  a turntable capture's background fixed to the camera (tensorf.data.turntable:
                        the median of every training view), which orbits composite behind the
                        object as its camera saw it
    RUN/checkpoints/    orbax checkpoints (tensorf.checkpoint)
    RUN/lock            held by the process training into RUN (pid and host), removed at its end
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import jax
import numpy as np

from tensorf import config as cfgmod
from tensorf.checkpoint import Checkpointer
from tensorf.config import TrainConfig
from tensorf.data.cameras import Cameras
from tensorf.data.views import Scene, Views
from tensorf.errors import UserError, warn
from tensorf.models.base import Model, build_model
from tensorf.visualize import to_uint8


def resolved_config(cfg: TrainConfig, scene: Scene, backend: str | None = None, kind: str | None = None,
                    turntable: bool | None = None, downscale: int | None = None) -> TrainConfig:
    """The config as a run records it: the dataset's scene bounds, ray space, the factor its
    images were read at and (for captures: `kind` given) kind and turntable decision filled in
    and the model's `auto` choices decided, so the run can be restored without guessing."""
    data = dataclasses.replace(cfg.data, downscale=cfg.data.downscale if downscale is None else downscale,
                               aabb=scene.aabb, near_far=scene.near_far, background=scene.background,
                               ndc=scene.ndc, contraction=scene.contraction or "none", kind=kind or cfg.data.kind,
                               ndc_scale=scene.ndc_scale,
                               turntable=cfg.data.turntable if turntable is None else "yes" if turntable else "no")
    model = cfgmod.resolve(cfg.model, scene, backend or jax.default_backend(), capture_360=kind == "360")
    return dataclasses.replace(cfg, data=data, model=model)


def scene_of(cfg: TrainConfig) -> Scene:
    d = cfg.data
    if d.aabb is None or d.near_far is None or d.background is None:
        raise UserError("the run's config.json lacks the scene bounds (data.aabb, near_far, background); "
                        "it was written by an older version: add them or retrain")
    return Scene(aabb=d.aabb, near_far=d.near_far, background=d.background, ndc=bool(d.ndc),
                 contraction=None if d.contraction in ("none", "auto") else d.contraction,
                 ndc_scale=None if d.ndc_scale is None else tuple(d.ndc_scale), shell=d.contraction_shell)


def write_config(cfg: TrainConfig) -> None:
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.run_dir) / "config.json").write_text(cfgmod.to_json(cfg))


def load_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{path} not found; {run_dir} is not a run directory (train one with train_lego.py)")
    try:
        raw = json.loads(path.read_text())
        model = raw.get("model", {})
        if "proposal_final_samples" in model and "proposal_padding" not in model:
            # A TensoRF run from before the padding (stop 51) sampled without it: render it so.
            model["proposal_padding"] = 0.0
        return cfgmod.from_json(json.dumps(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError(f"{path}: unreadable run config ({str(e).splitlines()[0]}); restore it from a backup") from None


def write_cameras(run_dir: Path, cameras: Cameras, render_path: np.ndarray | None = None,
                  name: str = "cameras.json", files=None, held_out: Views | None = None,
                  held_out_split: str = "test") -> None:
    """The training cameras (and the dataset's render path) as RUN/cameras.json; with
    --camera-opt, their refined poses go to RUN/cameras_refined.json at the end. files: the
    training images read, and held_out: the eval views (of split held_out_split), recorded for
    tensorf.export_cameras."""
    body = cameras.to_json()
    if render_path is not None:
        body["render_path"] = np.asarray(render_path).tolist()
    if files is not None:
        body["files"] = [str(Path(f).resolve()) for f in files]
    if held_out is not None:
        body["eval"] = {**held_out.cameras.to_json(), "split": held_out_split}
        if held_out.files is not None:
            body["eval"]["files"] = [str(Path(f).resolve()) for f in held_out.files]
    (Path(run_dir) / name).write_text(json.dumps(body))


def write_world(run_dir: Path, to_source: np.ndarray | None) -> None:
    """How the capture file's world maps to training's, as RUN/dataparser_transforms.json in
    nerfstudio's form (x_training = scale * (transform @ [x; 1]), transform 3x4), which its users'
    scripts read; none for a scene trained in its own world (Blender)."""
    if to_source is None:
        return
    forward = np.linalg.inv(np.asarray(to_source, np.float64))
    scale = float(np.cbrt(np.linalg.det(forward[:3, :3])))
    body = {"transform": (forward[:3] / scale).tolist(), "scale": scale}
    (Path(run_dir) / "dataparser_transforms.json").write_text(json.dumps(body, indent=1))


def load_to_source(run_dir: Path) -> np.ndarray | None:
    """(4, 4) similarity from the run's world to its capture file's (write_world's inverse), or
    None: the run trained in the file's own world, or predates the file."""
    path = Path(run_dir) / "dataparser_transforms.json"
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text())
        forward = np.eye(4)
        forward[:3] = np.asarray(body["transform"], np.float64) * float(body["scale"])
        return np.linalg.inv(forward)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: unreadable ({e}); delete it to export in the run's own frame") from None


def camera_drift(run_dir: Path) -> np.ndarray | None:
    """(4, 4) motion the training cameras made together when --camera-opt refined them
    (tensorf.training.cameras.common_motion of RUN/cameras.json to RUN/cameras_refined.json): the
    field follows the cameras it was fitted to. None: the run did not refine them."""
    from tensorf.training.cameras import common_motion

    refined = Path(run_dir) / "cameras_refined.json"
    if not refined.is_file():
        return None
    return common_motion(load_cameras(run_dir).c2w.astype(np.float64),
                         load_cameras(run_dir, name=refined.name).c2w.astype(np.float64))


def field_to_capture(run_dir: Path) -> np.ndarray | None:
    """(4, 4) from the trained field's frame to the capture file's: load_to_source's similarity,
    after undoing the training cameras' common drift (camera_drift). None: the field's frame is
    the file's."""
    to_source, drift = load_to_source(run_dir), camera_drift(run_dir)
    if drift is not None:
        to_source = (np.eye(4) if to_source is None else to_source) @ np.linalg.inv(drift)
    return to_source


def frame_name(run_dir: Path, frame: str) -> str:
    """What an export in `frame` ("capture" or "run") is written in, for its closing line: a run
    trained in its file's own world (Blender), or before it recorded the way back, has no other."""
    native = frame == "run" or load_to_source(run_dir) is None
    return "the run's coordinates" if native else "the capture's coordinates"


def to_capture_frame(to_source: np.ndarray, points: np.ndarray, normals: np.ndarray | None = None):
    """points (P, 3) (and unit normals (P, 3)) of the run's world in the capture file's: the
    similarity to_source (4, 4) applied (normals turned only)."""
    points = np.asarray(points, np.float64) @ to_source[:3, :3].T + to_source[:3, 3]
    if normals is not None:
        turn = to_source[:3, :3] / np.cbrt(np.linalg.det(to_source[:3, :3]))
        normals = (np.asarray(normals, np.float64) @ turn.T).astype(np.float32)
    return points, normals


def write_exposure(run_dir: Path, maps: np.ndarray) -> None:
    """--exposure's learned colour maps (V, 3, 4), one per training view in RUN/cameras.json's
    order, as RUN/exposure.json: [A | b] takes the field's colour c to the photo's A @ c + b."""
    (Path(run_dir) / "exposure.json").write_text(json.dumps({"maps": np.round(maps, 6).tolist()}))


def write_background(run_dir: Path, background: np.ndarray) -> None:
    iio.imwrite(Path(run_dir) / "background.png", to_uint8(background))


def load_background(run_dir: Path, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A turntable run's background fixed to the camera (H, W, 3) float32 in [0, 1], resized to
    size (width, height) when given; None for other runs."""
    path = Path(run_dir) / "background.png"
    if not path.is_file():
        return None
    image = iio.imread(path)[..., :3].astype(np.float32) / 255.0
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        image = np.asarray(jax.image.resize(image, (size[1], size[0], 3), "linear", antialias=True))
    return image


def load_render_path(run_dir: Path) -> np.ndarray | None:
    """The dataset's own camera path (N, 4, 4) recorded with the run (LLFF: a spiral), or None."""
    path = Path(run_dir) / "cameras.json"
    body = json.loads(path.read_text()) if path.is_file() else {}
    return None if body.get("render_path") is None else np.asarray(body["render_path"], np.float32)


def load_cameras(run_dir: Path, cfg: TrainConfig | None = None, name: str = "cameras.json") -> Cameras:
    """Training cameras of a run: RUN/<name> (cameras.json, or cameras_refined.json), else (with
    cfg) the run's dataset."""
    path = Path(run_dir) / name
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


# --- one run per directory ----------------------------------------------------------------

RUN_OUTPUTS = ("checkpoints", "best", "tb", "eval", "config.json", "cameras.json", "background.png",
               "dataparser_transforms.json", "cameras_refined.json", "exposure.json")
# What the exports and renderers write into RUN by default. They show the field --overwrite deletes,
# so they go with it: a stale RUN/points.ply would otherwise seed export_cameras' COLMAP scene.
RUN_EXPORTS = ("points.ply", "mesh.ply", "transforms.json", "colmap", "viewer", "render_360.gif")


def holds_run(run_dir: Path) -> bool:
    return (Path(run_dir) / "config.json").is_file() or (Path(run_dir) / "checkpoints").is_dir()


class RunLock:
    """RUN/lock: the pid and host of the process training into RUN, so that a second one refuses
    instead of interleaving checkpoints. Created atomically (O_EXCL); a lock whose process is gone
    (same host, pid not running) is stale and taken over with a warning."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "lock"
        self.held = False

    def acquire(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._acquire()
        except OSError as e:
            raise UserError(f"{self.path.parent}: cannot write the run directory ({e.strerror or e}); pick a "
                            "writable --run-dir") from None

    def _acquire(self) -> "RunLock":
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner.get("host") != me["host"]:
                    raise UserError(f"{self.path.parent} is locked by process {owner.get('pid')} on host "
                                    f"{owner.get('host')} ({self.path}); if that run is over, delete the lock file") from None
                if _alive(owner.get("pid")):
                    raise UserError(f"{self.path.parent} is being trained by process {owner['pid']} ({self.path}); "
                                    "wait for it to finish, or pick another --run-dir") from None
                warn(f"{self.path}: taking over the lock of process {owner.get('pid')}, which is no longer running")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UserError(f"{self.path}: another process keeps taking this lock; pick another --run-dir")

    def _owner(self) -> dict:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {"host": socket.gethostname()}  # half-written by a process killed while locking: stale

    def taken(self) -> bool:
        """Whether a process is training into RUN now (the lock's owner alive, or on another host)."""
        if not self.path.is_file():
            return False
        owner = self._owner()
        return owner.get("host") != socket.gethostname() or _alive(owner.get("pid"))

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> RunLock:
    """Lock RUN for this process; a directory already holding a run is refused unless resumed,
    or emptied of its outputs first with overwrite."""
    lock = RunLock(run_dir).acquire()
    if holds_run(run_dir) and not resume:
        if not overwrite:
            lock.release()
            raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or start over with "
                            "--overwrite (deletes its checkpoints, logs, exports and renders)")
        for target in run_outputs(Path(run_dir)):
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    return lock


def run_outputs(run_dir: Path) -> list[Path]:
    """Everything in RUN that training, the exports and the renderers wrote: what --overwrite
    deletes. Camera paths (RUN/*.json made in the viewer) are the user's and stay; their GIFs go."""
    names = set(RUN_OUTPUTS) | set(RUN_EXPORTS)
    renders = {Path(n).stem for n in RUN_EXPORTS if n.endswith(".gif")}
    renders |= {p.stem for p in run_dir.glob("*.json") if p.name not in names}
    for stem in renders:
        names |= {f"{stem}.gif", f"{stem}_depth.gif", f"{stem}_opacity.gif"}
    return sorted(run_dir / n for n in names if (run_dir / n).exists())


def check_resumable(saved: TrainConfig, cfg: TrainConfig, run_dir: Path) -> None:
    """Refuse a --resume whose overrides change the model family or a parameter's shape, naming
    the fields; every other override (more steps, logging, data) is applied."""
    family = lambda c: type(c.model).__name__.replace("Config", "")  # noqa: E731
    if type(saved.model) is not type(cfg.model):
        raise UserError(f"{run_dir} holds a {family(saved)} run; --resume cannot turn it into {family(cfg)}. "
                        "Start the new model in another --run-dir")
    if saved.camera_opt.mode != cfg.camera_opt.mode:
        raise UserError(f"{run_dir} was trained with --camera-opt.mode {saved.camera_opt.mode}; --resume cannot "
                        f"change it to {cfg.camera_opt.mode}. Drop the override, or start a new --run-dir")
    if saved.exposure.mode != cfg.exposure.mode:
        raise UserError(f"{run_dir} was trained with --exposure.mode {saved.exposure.mode}; --resume cannot "
                        f"change it to {cfg.exposure.mode}. Drop the override, or start a new --run-dir")
    scene = scene_of(saved)
    old, new = build_model(saved.model, scene), build_model(cfg.model, scene)
    state = old.initial_state()
    shapes = lambda m: jax.tree.map(lambda x: x.shape, jax.eval_shape(lambda: m.init(jax.random.key(0), state)))  # noqa: E731
    if shapes(old) != shapes(new):
        a, b = dataclasses.asdict(saved.model), dataclasses.asdict(cfg.model)
        changed = [f"--model.{k.replace('_', '-')} {a[k]} -> {b[k]}" for k in a if a[k] != b[k]]
        raise UserError(f"--resume {run_dir}: {', '.join(changed)} changes the shapes of the saved parameters; drop "
                        "the override, or train it as a new run in another --run-dir")
