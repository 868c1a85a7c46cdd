"""Posed photo captures (transforms.json, COLMAP models): from frames to training views.

A format's reader turns its files into a `Capture` (frames with an OpenGL camera-to-world pose,
pinhole intrinsics, a lens model, an image file; optionally the sparse points); `load_capture`
does the rest the same way for every format:
- frames whose image file is missing are dropped with one warning (a capture with none is an error);
- photos a phone stored sideways (an EXIF orientation) are turned upright with their cameras
  (upright_frames);
- poses are normalised as nerfstudio's dataparser does by default (nerfstudio_dataparser.py:
  orientation_method "up", center_method "poses", auto_scale_poses): rotated so the mean camera
  up is +z, translated so the mean camera position is the origin, scaled so the farthest camera
  sits at distance 1 along an axis;
- the capture is classified forward-facing or 360 from its cameras (capture_kind);
- a forward-facing capture with sparse points takes LLFF's treatment (tensorf.data.forward_facing):
  NDC rays, the nearest depth the points give placing NDC's near plane;
- else the box: nerfstudio's [-1, 1]^3 suits its contracted fields and leaves a forward-facing subject
  outside, so the box here is centred on the point the cameras look at (nearest to every optical
  axis), as wide as what the cameras see there (distance x tan(half field of view), x 1.5); when
  the capture has sparse points, the box is fitted to them instead: when many points lie far
  beyond the points' own box (a distant background) the scene is contracted (mip-NeRF 360) around
  that box unless told otherwise, and a bounded scene's box holds every surface its images show
  (points.box_seen);
- splits from the capture's own lists, else every `hold_every`-th frame held out as test.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tensorf.data import lens
from tensorf.data.cameras import Cameras, degenerate_rotation
from tensorf.data.capture_kind import CaptureKind, classify
from tensorf.data.forward_facing import (MIN_POINTS_SEEN, NDC_BOX, NDC_NEAR_FAR, capture_ndc, fits_ndc, ndc_frame,
                                         point_bounds)
from tensorf.data.images import read_depth, read_images, read_mask
from tensorf.data.orientation import SWAPS_SIDES, exif_orientations, turn_camera
from tensorf.data.orbit import average_pose, homogeneous, orbit_from_cameras, spiral_path
from tensorf.data.points import box_around, box_seen
from tensorf.data.turntable import Turntable, decide, neighbour_backgrounds
from tensorf.data.views import Scene, Views
from tensorf.errors import UserError, warn

NEAR = 0.05  # nerfstudio's default near plane, in the normalised units
BOX_MARGIN = 1.5
# A scene is unbounded when more than this share of its sparse points lies beyond the box grown
# FAR_FACTOR times about its centre: a background that the box can only paint on its walls.
FAR_FACTOR = 2.0
FAR_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class Frame:
    """One posed photo: file and the downscale still to apply to it; c2w (4, 4) OpenGL axes;
    fx, fy, cx, cy, width, height of the full-size image; lens model and distortion (6,); mask:
    an image of the pixels to use (nonzero) and the downscale still to apply to it, or None."""

    file: Path
    factor: int
    c2w: np.ndarray
    intrinsics: tuple[float, float, float, float, int, int]
    model: str = "pinhole"
    distortion: tuple[float, ...] = (0.0,) * 6
    name: str = ""
    mask: Path | None = None
    mask_factor: int = 1
    orientation: int = 1
    """The EXIF orientation the file's pixels are turned upright by when read (upright_frames);
    the camera above is the upright view's."""
    border: int = 0
    """Pixels of the full-size image along each edge that hold no picture (Polycam's undistorted
    keyframes are black there): masked, neither trained on nor judged."""
    depth: Path | None = None
    """A depth map of the photo (images.read_depth), or None."""
    depth_scale: float = 1e-3
    """The capture's units per depth-map unit (nerfstudio's depth_unit_scale_factor: millimetres)."""


@dataclasses.dataclass(frozen=True)
class Capture:
    """What a format's reader found. source: the file named in messages; points (M, 3) in the
    frames' world, or None; splits: train/val/test lists of frame names (file names or paths as
    the format lists them), empty when the format has none."""

    source: Path
    frames: list[Frame]
    points: np.ndarray | None = None
    splits: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    to_source: np.ndarray | None = None
    """(4, 4): from the frames' world to the world of the file they came from (a COLMAP model's,
    whose axes the reader turned into nerfstudio's), or None where those are one."""
    far_points: np.ndarray | None = None
    """(M, 3): where the cameras' views end (LLFF: each optical axis at the far bound), when
    there are no sparse points to tell whether the scene reaches far beyond its box."""
    downscale: int = 1
    """The factor the frames' files and factors were placed for."""


@dataclasses.dataclass(frozen=True)
class LoadedCapture:
    train: Views
    eval: Views
    scene: Scene
    eval_split: str
    kind: CaptureKind
    render_path: np.ndarray | None
    turntable: Turntable | None = None
    """None: not considered (forward-facing captures)."""
    downscale: int = 1
    """The factor the images were read at."""
    to_source: np.ndarray | None = None
    """(4, 4) similarity from the training world (normalised) to the capture file's own world, or
    None where training uses the file's world as it is."""


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking unit vector a onto unit vector b (the shortest arc)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-8:  # opposite: half a turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def normalise_poses(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """nerfstudio's default: orient (mean up -> +z), centre (mean position -> 0), scale (max |t| = 1).
    Returns the new poses (N, 4, 4), the (4, 4) transform applied and the scale."""
    rot = rotation_between(c2w[:, :3, 1].mean(0), np.array([0.0, 0.0, 1.0]))
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rot, -rot @ c2w[:, :3, 3].mean(0)
    out = transform @ c2w
    scale = 1.0 / max(float(np.abs(out[:, :3, 3]).max()), 1e-8)
    out[:, :3, 3] *= scale
    return out, transform, scale


def auto_box(c2w: np.ndarray, half_fov: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The box the cameras (N, 4, 4) look into: around their focus point, BOX_MARGIN times what
    the widest half field of view (N,) (radians) spans at the mean distance to it."""
    focus = orbit_from_cameras(c2w).center
    distance = float(np.linalg.norm(c2w[:, :3, 3] - focus, axis=-1).mean())
    half = BOX_MARGIN * distance * float(np.tan(np.minimum(half_fov.max(), np.radians(75))))
    return tuple((focus - half).tolist()), tuple((focus + half).tolist())


def far_edge(box) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half size (3,) of the box grown FAR_FACTOR times about its centre: what lies
    beyond is far content."""
    lo, hi = np.asarray(box[0]), np.asarray(box[1])
    return (lo + hi) / 2, FAR_FACTOR * (hi - lo) / 2


def far_share(points: np.ndarray, box) -> float:
    """Share of points (M, 3) beyond the box's far edge."""
    centre, half = far_edge(box)
    return float(np.mean(np.any(np.abs(points - centre) > half, axis=-1)))


def lens_model(frames: list[Frame], where: Path) -> str:
    """The one lens model of the frames: pinhole and opencv frames together are opencv (a pinhole
    is an opencv lens with zero distortion); a fisheye or a panorama among other lenses is refused."""
    models = {f.model for f in frames if f.model != "pinhole" or any(f.distortion)}
    if not models:
        return "pinhole"
    # Lenses whose rays no other model's can stand in for.
    own = next((m for m in ("fisheye", "equirectangular") if m in models), None)
    if own and len(models) > 1:
        raise UserError(f"{where}: {own} and other lenses in one capture are not supported; "
                        "train each camera's frames separately")
    return own or "opencv"


def _check_cameras(frames: list[Frame], source: Path) -> None:
    """Every frame a camera that casts rays: finite poses with a rotation, positive focal lengths
    (every reader's poses meet here; a bad one would otherwise surface as a NaN loss)."""
    for f in frames:
        fx, fy, cx, cy = f.intrinsics[:4]
        where = f"{source} image {f.name or f.file.name}"
        if not np.isfinite(f.c2w).all() or degenerate_rotation(f.c2w):
            raise UserError(f"{where}: its pose is not finite or its rotation is degenerate; fix or re-export the poses")
        if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
            raise UserError(f"{where}: focal lengths {fx:g}, {fy:g} (principal point {cx:g}, {cy:g}); they must be "
                            "positive and finite: fix or re-export the cameras")


def _existing(capture: Capture) -> list[Frame]:
    missing = [f for f in capture.frames if not f.file.is_file()]
    if len(missing) == len(capture.frames):
        raise UserError(f"{capture.source}: none of its {len(missing)} frames' images exists (first: "
                        f"{missing[0].file}); copy the images next to it or fix the file paths")
    if missing:
        warn(f"{capture.source}: {len(missing)} of {len(capture.frames)} frames have no image file (first: "
             f"{missing[0].file}); training on the {len(capture.frames) - len(missing)} that do")
    return upright_frames([f for f in capture.frames if f.file.is_file()], capture.source)


# EXIF orientations that turn a photo without mirroring it: a mirrored camera (determinant -1)
# would break what takes camera rotations as rotations (the viewer's quaternions).
TURNS = (3, 6, 8)


def upright_frames(frames: list[Frame], source: Path) -> list[Frame]:
    """The frames with photos a phone stored sideways (an EXIF orientation) turned upright, each
    with its camera (orientation.turn_camera): their renders stand upright and an orbit's up is
    the scene's. The poses were made on the stored pixels (COLMAP reads them so) unless the frame's
    size is the upright view's (a tool that obeyed the tag): then only the pixels turn. Mirrored
    photos are used as stored, with a warning."""
    tags = exif_orientations([f.file for f in frames])
    out, turned, mirrored = [], 0, []
    for f, (o, stored) in zip(frames, tags):
        if o == 1 or stored is None:
            out.append(f)
        elif o not in TURNS:
            mirrored.append(f.file)
            out.append(f)
        else:
            w, h = f.intrinsics[4:]
            # The stored photo's sides in the frame's proportions, swapped (to half a percent: rounding).
            posed_upright = o in SWAPS_SIDES and w != h and abs(stored[0] * w - stored[1] * h) <= 0.005 * stored[1] * h
            if posed_upright:
                out.append(dataclasses.replace(f, orientation=o))
            else:
                c2w, intrinsics, distortion = turn_camera(o, f.c2w, f.intrinsics, f.distortion)
                out.append(dataclasses.replace(f, c2w=c2w, intrinsics=intrinsics, distortion=distortion, orientation=o))
            turned += 1
    if turned:
        print(f"{source}: {turned} of {len(frames)} images are stored sideways with an EXIF orientation; turned upright "
              "with their cameras", flush=True)
    if mirrored:
        warn(f"{source}: {len(mirrored)} of {len(frames)} images are stored mirrored with an EXIF orientation (first: "
             f"{mirrored[0]}) and are used as stored, as their poses were made")
    return out


def _split_indices(capture: Capture, frames: list[Frame], hold_every: int) -> tuple[list[int], list[int], str]:
    lists = capture.splits
    if lists.get("train"):
        lookup: dict[str, int] = {}
        for i, f in enumerate(frames):
            lookup.setdefault(f.name, i)
            lookup.setdefault(Path(f.name).name, i)
        split = "test" if lists.get("test") else "val"

        def indices(key: str) -> list[int]:
            # Frames dropped for a missing image leave their names behind: skip them quietly
            # (the warning above has counted them).
            return [lookup.get(n, lookup.get(Path(n).name)) for n in lists.get(key) or []
                    if n in lookup or Path(n).name in lookup]

        return indices("train"), indices(split), split
    test = list(range(0, len(frames), hold_every))
    return [i for i in range(len(frames)) if i not in set(test)], test, "test"


def load_capture(capture: Capture, downscale: int = 1, hold_every: int = 8, eval_views: tuple[int, ...] = (),
                 background: float = 1.0, kind: str | CaptureKind = "auto",
                 contraction: str = "auto", turntable: str = "auto", depth: bool = False,
                 ndc: bool | None = None) -> LoadedCapture:
    """Training and eval views, the scene, the eval split's name, the capture's kind, its render
    path (a spiral for forward-facing captures, None: an orbit) and whether it is a turntable
    (tensorf.data.turntable) of a posed capture. depth: read the frames' depth maps into the
    views (Views.depths, in the training world's units). ndc: rays in NDC (forward_facing); None:
    for a forward-facing capture whose points bound every camera's view, without depth maps."""
    frames = _existing(capture)
    _check_cameras(frames, capture.source)
    if depth and not any(f.depth is not None for f in frames):
        raise UserError(f"{capture.source}: --data.depth asks for depth maps and no frame has one (transforms.json: "
                        "depth_file_path; Polycam: keyframes/depth/); drop --data.depth")
    model = lens_model(frames, capture.source)
    c2w, transform, scale = normalise_poses(np.stack([f.c2w for f in frames]))
    # x_training = scale * (transform @ x_frames), undone, then the reader's own change of world.
    to_source = (np.eye(4) if capture.to_source is None else capture.to_source) @ np.linalg.inv(transform) \
        @ np.diag([1.0 / scale] * 3 + [1.0])
    train, test, split = _split_indices(capture, frames, hold_every)
    if not train or not test:
        raise UserError(f"{capture.source}: {len(train)} train and {len(test)} {split} frames; both splits need "
                        "frames (add frames or change --data.hold-every)")
    if eval_views:
        bad = [i for i in eval_views if not 0 <= i < len(test)]
        if bad:
            raise UserError(f"{capture.source}: {split} view indices {bad} out of range ({len(test)} {split} views)")
        test = [test[i] for i in eval_views]
    distortion = np.asarray([f.distortion for f in frames])

    def views(idx: list[int]) -> Views:
        extra = {frames[i].factor for i in idx}
        if len(extra) > 1:  # some frames had images_<d>/ files, others not
            raise UserError(f"{capture.source.parent}: images_{downscale}/ holds only some of the frames; complete "
                            "it or remove it")
        sizes = np.asarray([frames[i].intrinsics[4:] for i in idx], np.float64) / downscale
        images = read_images([frames[i].file for i in idx], extra.pop(), background, where=str(capture.source),
                             sizes=sizes, orientations=[frames[i].orientation for i in idx])
        k = np.asarray([frames[i].intrinsics[:4] for i in idx]) / downscale
        w, h = sizes.astype(np.int64).T
        cams = Cameras(c2w[idx].astype(np.float32), k[:, 0], k[:, 1], k[:, 2], k[:, 3], w, h, ndc=space, model=model,
                       distortion=distortion[idx])
        # Photos of several sizes (a phone turned for some) are padded to the largest (read_images):
        # a mask keeps each view's own pixels, so the padding is never trained on nor judged.
        shape = images.shape[1:3]
        padded = not ((w == shape[1]).all() and (h == shape[0]).all())
        masks = None
        if padded or any(frames[i].mask is not None or frames[i].border for i in idx):
            masks = np.zeros((len(idx), *shape), bool)
            for j, i in enumerate(idx):
                masks[j, :h[j], :w[j]] = True if frames[i].mask is None else \
                    read_mask(frames[i].mask, frames[i].mask_factor, (w[j], h[j]), frames[i].orientation)
                b = -(-frames[i].border // downscale)  # a pixel that covers any of the border is out
                if b:
                    masks[j, :b], masks[j, h[j] - b:], masks[j, :, :b], masks[j, :, w[j] - b:] = False, False, False, False
        depths = None
        if depth:
            # In the training world: the poses were scaled by `scale`, and distances with them.
            depths = np.zeros(images.shape[:3], np.float32)
            for j, i in enumerate(idx):
                if frames[i].depth is not None:
                    depths[j, :h[j], :w[j]] = scale * read_depth(frames[i].depth, (w[j], h[j]), frames[i].depth_scale,
                                                                 frames[i].orientation)
        return Views(images=images, cameras=cams, names=tuple(Path(frames[i].name).stem for i in idx),
                     masks=masks, files=tuple(frames[i].file for i in idx), depths=depths)

    k = np.asarray([f.intrinsics for f in frames])
    half_fov = half_field_of_view(k, model, distortion)
    box = auto_box(c2w, half_fov)
    points = None
    if capture.points is not None and len(capture.points) >= 10:
        # The surfaces SfM found, moved and scaled as the poses were: a tighter box than the
        # cameras' view (the pose normalisation applies to points as to camera centres).
        points = scale * (capture.points @ transform[:3, :3].T + transform[:3, 3])
        box = box_around(points)
    panorama = model == "equirectangular"
    found = kind if isinstance(kind, CaptureKind) else classify(c2w, kind, panorama)
    space = None
    # Contraction asked for (the unbounded presets) means world rays: NDC and contraction exclude each other.
    if ndc is not False and found.kind == "forward-facing" and not panorama and contraction in ("auto", "none"):
        bounds = None if points is None or depth else point_bounds(c2w, k, points)
        if ndc and bounds is None:
            why = ("depth maps are read in world units" if depth else "its sparse points, which place NDC's near plane, "
                   f"{'are missing' if points is None else f'leave a camera with fewer than {MIN_POINTS_SEEN} in view'}")
            raise UserError(f"{capture.source}: --data.ndc cannot hold for this capture: {why}; drop --data.ndc")
        if bounds is not None:
            space = capture_ndc(k)
            framed, to_frame, bounds = ndc_frame(c2w, bounds)
            if not (ndc or fits_ndc(framed, k, space)):
                bounds = space = None
                print(f"{capture.source}: forward-facing, but no one NDC holds its cameras (one stands past the "
                      "near plane that the nearest surface sets, or looks away across the others' view): rays in "
                      "the world (--data.ndc True forces NDC)", flush=True)
        if bounds is not None:
            c2w = framed
            # White behind, as for every posed capture (_load_360 in llff.py says why).
            scene = Scene(aabb=NDC_BOX, near_far=NDC_NEAR_FAR, background=background, ndc=True)
            return LoadedCapture(views(train), views(test), scene, split, found, spiral_path(c2w[:, :3], bounds),
                                 None, downscale, to_source @ np.linalg.inv(to_frame))
    elif ndc:
        raise UserError(f"{capture.source}: --data.ndc is for forward-facing captures, and this one is "
                        f"{found.describe()}; drop --data.ndc")
    if contraction == "auto":
        ends = points
        if ends is None and capture.far_points is not None:
            ends = scale * (capture.far_points @ transform[:3, :3].T + transform[:3, 3])
        unbounded = ends is not None and found.kind == "360" and far_share(ends, box) > FAR_SHARE
        # A panorama always holds the far surroundings, whatever the points say of the middle.
        unbounded = unbounded or (panorama and found.kind == "360")
        contraction = "linf" if unbounded else "none"
    seen = None
    if points is not None and contraction == "none":
        seen = box_seen(points, c2w, k, model, distortion)
    if seen is not None:
        # Bounded, the box also holds the surfaces the images show where points are few, out to
        # the far content's edge (FAR_FACTOR): what lies beyond is painted on the box's walls.
        # The points' own box still decides contraction, and is the contracted scene's box.
        centre, half = far_edge(box)
        box = (tuple(np.maximum(np.minimum(box[0], seen[0]), centre - half).tolist()),
               tuple(np.minimum(np.maximum(box[1], seen[1]), centre + half).tolist()))
    reach = float(np.linalg.norm(c2w[:, :3, 3][:, None] - np.asarray(box)[None], axis=-1).max())
    scene = Scene(aabb=box, near_far=(NEAR, reach), background=background,
                  contraction=None if contraction == "none" else contraction)
    path = None
    if panorama:
        # Novel views replay the walk the camera took (as 90-degree pinholes, Cameras.with_poses):
        # a panorama's cameras look every way, so no orbit or spiral follows from them.
        path = c2w[np.argsort([f.name for f in frames], kind="stable")]
    elif found.kind == "forward-facing":
        # NeRF's spiral is drawn in the frame of the average pose (LLFF's poses are recentred on it).
        avg = homogeneous(average_pose(c2w[:, :3])[None])[0]
        local = np.linalg.inv(avg) @ c2w
        centre = (np.linalg.inv(avg) @ np.append(np.mean(box, 0), 1.0))[:3]
        depth = float(np.mean(local[:, 2, 3] - centre[2]))  # the box centre's depth, looking down -z
        half = 0.5 * float(np.linalg.norm(np.subtract(box[1], box[0])))
        path = avg @ spiral_path(local[:, :3], np.array([max(depth - half, NEAR), depth + half]))
    train_views, eval_views = views(train), views(test)
    empty = [] if eval_views.masks is None else np.flatnonzero(~eval_views.masks.any(axis=(1, 2)))
    if len(empty):
        raise UserError(f"{capture.source}: the mask of held-out view {eval_views.names[empty[0]]} keeps no pixel, so "
                        "nothing can judge it; fix its mask or hold out other views (--data.hold-every)")
    sizes = sorted({(int(f.intrinsics[4]), int(f.intrinsics[5])) for f in frames})
    if turntable == "yes" and len(sizes) > 1:
        raise UserError(f"{capture.source}: a turntable's views share one image size, these have "
                        f"{' and '.join(f'{w}x{h}' for w, h in sizes)}; leave out the photos of other sizes")
    # Photos of several sizes (turned) come from a camera that moved: no turntable to measure.
    measured = turntable != "auto" or (found.kind == "360" and len(sizes) == 1 and not panorama)
    table = decide(train_views.images, turntable) if measured else None
    if table is not None and table.on:
        # Medians of training views only: held-out views must not lend their pixels to a background.
        at = train_views.cameras.c2w[:, :3, 3]
        train_views = dataclasses.replace(
            train_views, background=neighbour_backgrounds(train_views.images, at, at, own=np.arange(len(at))))
        eval_views = dataclasses.replace(
            eval_views, background=neighbour_backgrounds(train_views.images, at, eval_views.cameras.c2w[:, :3, 3]))
    return LoadedCapture(train_views, eval_views, scene, split, found, path, table, downscale, to_source)


def half_field_of_view(k: np.ndarray, model: str, distortion: np.ndarray) -> np.ndarray:
    """Half the widest field of view (N,) (radians) of cameras with intrinsics k (N, 6+):
    the image edge's angle, through the lens."""
    xd = np.maximum(k[:, 4] / 2 / k[:, 0], k[:, 5] / 2 / k[:, 1])
    x, y, z = lens.undistorted_directions(xd, np.zeros_like(xd), distortion, model, xp=np)
    return np.arctan2(np.hypot(x, y), z)
