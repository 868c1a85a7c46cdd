"""LLFF forward-facing captures: poses_bounds.npy + images_<factor>/ (the NeRF paper's real scenes).

poses_bounds.npy holds one row of 17 numbers per image, in the images' file-name order: a 3x5
matrix (columns: the camera's down, right and backward axes, its position, and [H, W, focal] of the
full-resolution image), then the scene depth bounds [near, far] seen from that camera. The loader
follows NeRF's load_llff.py and the official TensoRF dataLoader/llff.py:
- axes to OpenGL (x right, y up, z backward): [down, right, back] -> [right, -down, back];
- scaled so the nearest bound sits at 1 / 0.75 and recentred on the mean pose
  (tensorf.data.forward_facing: NDC's frame);
- every `hold_every`-th image (0, 8, 16, ...) held out as the test split.

That is the forward-facing treatment. The same layout also carries 360-degree captures
(mip-NeRF 360's scenes ship in it), so the capture is classified from its cameras first
(tensorf.data.capture_kind); a 360 capture is normalised, boxed and split as every posed capture
is (tensorf.data.capture), its depth bounds deciding whether the scene needs contraction.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from tensorf.data.cameras import Cameras, degenerate_rotation
from tensorf.data.capture import Capture, Frame, LoadedCapture, load_capture
from tensorf.data.capture_kind import classify
from tensorf.data.forward_facing import NDC_BOX, NDC_NEAR_FAR, capture_ndc, ndc_frame
from tensorf.data.images import listed, read_images
from tensorf.data.orbit import homogeneous, spiral_path
from tensorf.data.views import Scene, Views
from tensorf.errors import UserError, warn


def _image_folder(root: Path, downscale: int) -> tuple[list[Path], int, int]:
    """The image files for `downscale`, the extra factor still to apply to them and the factor
    they end at: images_<d>/ as LLFF ships it, else a finer images_<m>/ (m dividing d) or images/
    downscaled here, else (with a warning) the nearest smaller images_<n>/ there is (a capture
    shipped at factor 8 only)."""
    folder = root / ("images" if downscale == 1 else f"images_{downscale}")
    if folder.is_dir():
        return listed(folder), 1, downscale
    have = sorted(p.name for p in root.glob("images*") if p.is_dir())
    shipped = sorted(int(n[7:]) for n in have if n[7:].isdigit())  # the factors of its images_<n>/
    # A finer images_<m>/ whose factor divides the one asked for (images_8/ for 16 or 32) reads
    # faster than the full-size images/ and needs no download of them.
    finer = [m for m in reversed(shipped) if 1 < m < downscale and downscale % m == 0]
    if finer:
        return listed(root / f"images_{finer[0]}"), downscale // finer[0], downscale
    if (root / "images").is_dir():
        return listed(root / "images"), downscale, downscale
    coarser = [n for n in shipped if n > downscale]
    if coarser:
        warn(f"{folder}: no such image folder; using {root / f'images_{coarser[0]}'} (factor {coarser[0]}, the "
             f"nearest there is; --data.downscale {coarser[0]} says so and silences this)")
        return listed(root / f"images_{coarser[0]}"), 1, coarser[0]
    raise UserError(f"{folder}: no such image folder (here: {', '.join(have) or 'no images* folders'}); "
                    f"pick --data.downscale to match one of them, or put the full-size images in {root / 'images'}")


def load_poses(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """poses_bounds.npy read and checked: c2w (N, 3, 4) in LLFF's own frame converted to OpenGL
    axes, full-size [H, W, focal] (N, 3) and bounds (N, 2), not yet rescaled or recentred."""
    path = root / "poses_bounds.npy"
    try:
        arr = np.load(path)
    except FileNotFoundError:
        raise UserError(f"{path} not found; an LLFF capture needs poses_bounds.npy (run LLFF's imgs2poses.py "
                        "on it, or give --data.format for another layout)") from None
    except Exception as e:  # numpy raises ValueError / OSError / UnpicklingError for damaged files
        raise UserError(f"{path}: unreadable ({e.__class__.__name__}); regenerate it with LLFF's imgs2poses.py") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or len(arr) == 0:
        raise UserError(f"{path}: holds an array of shape {arr.shape}, expected (N, 17): a 3x5 pose and 2 bounds "
                        "per image")
    if not np.all(np.isfinite(arr)):
        row = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise UserError(f"{path}: row {row} holds a non-finite number; regenerate the poses")
    m = arr[:, :15].reshape(-1, 3, 5).astype(np.float64)
    bounds = arr[:, 15:].astype(np.float64)
    if np.any(bounds <= 0):
        row = int(np.argwhere(bounds <= 0)[0, 0])
        raise UserError(f"{path}: row {row} has depth bounds {bounds[row].tolist()}; they must be positive")
    hwf = m[:, :, 4]
    if np.any(hwf <= 0):
        row = int(np.argwhere(hwf <= 0)[0, 0])
        raise UserError(f"{path}: row {row} has height, width and focal length {hwf[row].tolist()}; they must be "
                        "positive (regenerate the poses)")
    c2w = np.stack([m[:, :, 1], -m[:, :, 0], m[:, :, 2], m[:, :, 3]], axis=-1)
    bad = next((i for i, pose in enumerate(c2w) if degenerate_rotation(pose)), None)
    if bad is not None:
        raise UserError(f"{path}: row {bad}'s rotation is degenerate (a zero or repeated axis); regenerate the poses")
    return c2w, hwf, bounds


def load_llff(root: Path, downscale: int = 1, hold_every: int = 8, ndc: bool | None = None,
              eval_views: tuple[int, ...] = (), kind: str = "auto", contraction: str = "auto",
              turntable: str = "auto") -> LoadedCapture:
    """Train and test views, scene, kind and render path of an LLFF-layout capture. The test split
    is every `hold_every`-th image (eval_views index into it). Forward-facing (by its cameras, or
    `kind`): NDC rays from the plane z = -1 in the official NDC box (unless ndc is False: then the
    box holds the cameras and the farthest bound) and NeRF's spiral; 360: tensorf.data.capture."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist; point --data.path at an LLFF capture "
                        "(poses_bounds.npy + images_N/)")
    if downscale < 1:
        raise UserError(f"downscale must be a positive integer, got {downscale}")
    c2w, hwf, bounds = load_poses(root)
    files, extra, downscale = _image_folder(root, downscale)
    if len(files) != len(c2w):
        raise UserError(f"{root / 'poses_bounds.npy'} holds {len(c2w)} rows but {files[0].parent if files else root} "
                        f"has {len(files)} images; they must match one to one (same order)")
    found = classify(homogeneous(c2w), kind)
    if found.kind == "360" and not ndc:
        return _load_360(root, files, extra, downscale, c2w, hwf, bounds, hold_every, eval_views, found, contraction,
                         turntable)
    ndc = ndc is not False
    c2w, to_frame, bounds = ndc_frame(homogeneous(c2w), bounds)
    c2w = c2w[:, :3]
    to_source = np.linalg.inv(to_frame)  # training's world back to poses_bounds.npy's

    test = list(range(0, len(files), hold_every))
    train = [i for i in range(len(files)) if i not in set(test)]
    if not train:
        raise UserError(f"{root}: {len(files)} image(s) leave none to train on with --data.hold-every {hold_every}")
    if eval_views:
        bad = [i for i in eval_views if not 0 <= i < len(test)]
        if bad:
            raise UserError(f"{root}: test view indices {bad} out of range (every {hold_every}-th image: "
                            f"{len(test)} test views)")
        test = [test[i] for i in eval_views]

    full_h, full_w, focal = hwf[0]
    space = capture_ndc(np.asarray([[focal, focal, full_w / 2, full_h / 2, full_w, full_h]])) if ndc else None

    def views(indices: list[int]) -> Views:
        images = read_images([files[i] for i in indices], extra, where=str(files[0].parent))
        h, w = images[0].shape[:2]
        full_h, full_w, focal = hwf[indices[0]]
        _check_aspect(files[indices[0]], w, h, full_w, full_h)
        cams = Cameras.centered(homogeneous(c2w[indices]), w, h, focal * w / full_w, space)
        return Views(images=images, cameras=cams, names=tuple(files[i].stem for i in indices),
                     files=tuple(files[i] for i in indices))

    # White behind, as behind every posed capture: a field with softplus density starts empty, and
    # in front of black it gets no gradient (lego-cpu on fern: 4.8 dB, never started). The LLFF
    # presets set the official black; their relu density starts non-empty (benchmarks/results.md).
    if ndc:
        scene = Scene(aabb=NDC_BOX, near_far=NDC_NEAR_FAR, background=1.0, ndc=True)
    else:
        reach = float(np.abs(c2w[:, :, 3]).max() + bounds.max())
        scene = Scene(aabb=((-reach,) * 3, (reach,) * 3), near_far=(float(bounds.min() * 0.9), float(bounds.max() * 1.1)),
                      background=1.0)
    return LoadedCapture(views(train), views(test), scene, "test", found, spiral_path(c2w, bounds), downscale=downscale,
                         to_source=to_source)


def _check_aspect(file: Path, w: int, h: int, full_w: float, full_h: float) -> None:
    if abs(w / h - full_w / full_h) > 0.01:
        raise UserError(f"{file}: aspect {w}x{h} does not match the {full_w:.0f}x{full_h:.0f} recorded "
                        "in poses_bounds.npy; the images and poses belong to different captures")


def _load_360(root, files, extra, downscale, c2w, hwf, bounds, hold_every, eval_views, found, contraction, turntable):
    """A 360 capture in LLFF layout as a posed capture: full-size pinhole intrinsics from hwf,
    and the far end of each camera's depth range standing in for the sparse points when deciding
    whether the scene reaches far beyond its box."""
    first = iio.imread(files[0])
    full_h, full_w, _ = hwf[0]
    _check_aspect(files[0], first.shape[1] // extra, first.shape[0] // extra, full_w, full_h)
    frames = []
    for i, f in enumerate(files):
        h, w, focal = hwf[i]
        # Intrinsics at the size `downscale` expects (the images' own size times it).
        s = first.shape[1] // extra * downscale / w
        frames.append(Frame(file=f, factor=extra, c2w=homogeneous(c2w[i:i + 1])[0],
                            intrinsics=(focal * s, focal * s, w * s / 2, h * s / 2, round(w * s), round(h * s)),
                            name=f.name))
    forward = -c2w[:, :, 2] / np.linalg.norm(c2w[:, :, 2], axis=-1, keepdims=True)
    far = c2w[:, :, 3] + bounds[:, 1:] * forward
    # White behind the box, as for every posed capture: with black, a field that starts empty
    # (softplus density) renders exactly the background, no sample reaches the shading threshold,
    # and no gradient reaches the density.
    return load_capture(Capture(source=root / "poses_bounds.npy", frames=frames, far_points=far), downscale,
                        hold_every, eval_views, background=1.0, kind=found, contraction=contraction,
                        turntable=turntable)


def write_llff(root: Path, c2w: np.ndarray, bounds: np.ndarray, images: np.ndarray, focal: float,
               folder: str = "images") -> None:
    """Write a capture in LLFF layout: OpenGL c2w (N, 4, 4), bounds (N, 2), uint8 images
    (N, H, W, 3) into root/folder/, focal in pixels of these images (tests and the generated
    forward-facing scene)."""
    root = Path(root)
    (root / folder).mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape[:3]
    m = np.stack([-c2w[:, :3, 1], c2w[:, :3, 0], c2w[:, :3, 2], c2w[:, :3, 3],
                  np.broadcast_to([h, w, focal], (n, 3))], axis=-1)
    np.save(root / "poses_bounds.npy", np.concatenate([m.reshape(n, 15), bounds], axis=1))
    for i, img in enumerate(images):
        iio.imwrite(root / folder / f"image{i:03d}.png", img)
