"""A small procedural scene the project renders itself, written in Blender format.

Analytic geometry (a striped sphere, a checkered slab, a box and a small glossy sphere) inside
[-1, 1]^3, Lambertian texture plus a Blinn-Phong highlight (view-dependent), ray-traced in numpy
with 2x2 supersampling and written as RGBA PNGs + transforms_{train,val,test}.json. Cameras sit
on a sphere of radius 4 looking at the origin, like the NeRF-synthetic scenes, so the official
near/far and box work unchanged.

    python -m tensorf.data.generated --out data/generated
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tyro

from tensorf.data import lens

CAMERA_RADIUS = 4.0
CAMERA_ANGLE_X = 0.6911  # the NeRF-synthetic field of view
LIGHT = np.array([0.4, 0.3, 0.87]) / np.linalg.norm([0.4, 0.3, 0.87])

# Axis-aligned bounds of the geometry; tests compare reconstructed surfaces against them.
GEOMETRY_BOUNDS = ((-0.9, -0.9, -0.6), (0.9, 0.9, 0.85))


def look_at(position: np.ndarray) -> np.ndarray:
    """Camera-to-world (4, 4), OpenGL convention, camera at `position` looking at the origin, z up."""
    back = position / np.linalg.norm(position)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, position
    return c2w


def camera_poses(n: int, seed: int, radius: float = CAMERA_RADIUS) -> list[np.ndarray]:
    """n cameras on the upper hemisphere (elevation 10-70 degrees), evenly spread in azimuth."""
    rng = np.random.default_rng(seed)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    poses = []
    for i in range(n):
        az = i * golden + rng.uniform(0, 0.3)
        el = math.radians(10 + 60 * ((i * 0.618034 + rng.uniform(0, 0.1)) % 1.0))
        pos = radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(pos))
    return poses


def _sphere(o, d, center, radius):
    oc = o - center
    b = np.sum(oc * d, -1)
    c = np.sum(oc * oc, -1) - radius**2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc > 0) & (t > 0), t, np.inf)
    p = o + t[..., None] * d
    return t, (p - center) / radius


def _box(o, d, lo, hi):
    inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
    ta, tb = (lo - o) * inv, (hi - o) * inv
    tmin, tmax = np.minimum(ta, tb), np.maximum(ta, tb)
    t0, t1 = tmin.max(-1), tmax.min(-1)
    t = np.where((t1 >= t0) & (t0 > 0), t0, np.inf)
    axis = tmin.argmax(-1)
    n = np.zeros_like(d)
    np.put_along_axis(n, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
    return t, n


def surface_distance(p: np.ndarray) -> np.ndarray:
    """(...,) distance from points p (..., 3) to the nearest of the scene's surfaces (the shapes
    _shade traces), signed: negative inside a shape. Tests judge reconstructed geometry by it."""
    def sphere(center, radius):
        return np.linalg.norm(p - center, axis=-1) - radius

    def box(lo, hi):
        centre, half = (np.add(lo, hi)) / 2, (np.subtract(hi, lo)) / 2
        q = np.abs(p - centre) - half
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)

    return np.min([sphere([0.0, 0.0, 0.3], 0.55), box([-0.9, -0.9, -0.6], [0.9, 0.9, -0.4]),
                   box([0.25, -0.75, -0.4], [0.7, -0.3, 0.2]), sphere([-0.5, 0.5, -0.1], 0.3)], axis=0)


def _grain(p: np.ndarray) -> np.ndarray:
    """A non-repeating texture (...,) in [0, 1] over points p (..., 3): a sum of plane waves of
    fixed random directions and frequencies, for feature matching (photos -> poses)."""
    rng = np.random.default_rng(7)
    waves = rng.normal(size=(32, 3))
    waves *= rng.uniform(10.0, 70.0, (32, 1)) / np.linalg.norm(waves, axis=-1, keepdims=True)
    phase = rng.uniform(0, 2 * np.pi, 32)
    g = np.sin(p @ waves.T + phase).sum(-1) / np.sqrt(16.0)
    return 0.5 + 0.5 * np.tanh(2.5 * g)  # sharp-edged blobs: corners and blobs for SIFT


def _hits(o, d) -> list:
    """(distance, normal) of rays (..., 3) to each of the scene's four shapes (inf: missed)."""
    return [
        _sphere(o, d, np.array([0.0, 0.0, 0.3]), 0.55),
        _box(o, d, np.array([-0.9, -0.9, -0.6]), np.array([0.9, 0.9, -0.4])),
        _box(o, d, np.array([0.25, -0.75, -0.4]), np.array([0.7, -0.3, 0.2])),
        _sphere(o, d, np.array([-0.5, 0.5, -0.1]), 0.3),
    ]


def render_depth(c2w: np.ndarray, size: int, angle_x: float = CAMERA_ANGLE_X) -> np.ndarray:
    """(size, size) float64 depth map of the scene from a pinhole camera: each pixel centre's
    distance to the surface along the camera's viewing axis, as a phone's depth map gives it;
    0 where the pixel sees nothing."""
    dirs = _camera_rays(c2w, size, angle_x=angle_x)
    with np.errstate(invalid="ignore"):
        t = np.stack([h[0] for h in _hits(np.broadcast_to(c2w[:3, 3], dirs.shape), dirs)], -1).min(-1)
    z = t * (dirs @ -c2w[:3, 2])
    return np.where(np.isfinite(z), z, 0.0)


def _shade(o, d, textured: bool = False):
    """Trace rays (..., 3); returns RGB (..., 3) and coverage (...,). textured: albedo modulated
    by _grain, so that features can be found and matched between views."""
    hits = _hits(o, d)
    ts = np.stack([h[0] for h in hits], -1)
    which = ts.argmin(-1)
    t = ts.min(-1)
    hit = np.isfinite(t)
    normal = np.take_along_axis(np.stack([h[1] for h in hits], -2), which[..., None, None], -2)[..., 0, :]
    p = o + np.where(hit, t, 0)[..., None] * d

    # Textures: latitude stripes on the big sphere, checkers on the slab, flat colours elsewhere.
    stripes = 0.5 + 0.5 * np.sign(np.sin(10.0 * (p[..., 2] - 0.3) + 3.0 * np.arctan2(p[..., 1], p[..., 0])))
    sphere_col = stripes[..., None] * np.array([0.9, 0.35, 0.1]) + (1 - stripes[..., None]) * np.array([0.2, 0.5, 0.9])
    check = (np.floor(p[..., 0] * 4) + np.floor(p[..., 1] * 4)) % 2
    slab_col = check[..., None] * np.array([0.85, 0.85, 0.8]) + (1 - check[..., None]) * np.array([0.25, 0.3, 0.3])
    albedo = np.select(
        [which[..., None] == 0, which[..., None] == 1, which[..., None] == 2],
        [sphere_col, slab_col, np.broadcast_to(np.array([0.3, 0.75, 0.3]), p.shape)],
        np.broadcast_to(np.array([0.8, 0.8, 0.2]), p.shape),
    )
    if textured:
        albedo = albedo * (0.35 + 0.65 * _grain(p))[..., None]
    diffuse = np.clip(np.sum(normal * LIGHT, -1), 0, 1)
    half = LIGHT - d
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    gloss = np.where(which == 3, 64.0, 16.0)
    spec = np.clip(np.sum(normal * half, -1), 0, 1) ** gloss * np.where(which == 1, 0.15, 0.5)
    rgb = np.clip(albedo * (0.25 + 0.75 * diffuse[..., None]) + spec[..., None], 0, 1)
    return np.where(hit[..., None], rgb, 1.0), hit.astype(np.float64)


def _sky(d: np.ndarray) -> np.ndarray:
    """A backdrop at infinity (..., 3) from directions (..., 3): an elevation gradient with
    azimuthal bands, so an unbounded model has something to learn out there."""
    el = np.arcsin(np.clip(d[..., 2], -1, 1))
    bands = 0.5 + 0.5 * np.sin(6.0 * np.arctan2(d[..., 1], d[..., 0]) + 4.0 * el)
    ground, zenith = np.array([0.45, 0.35, 0.25]), np.array([0.3, 0.55, 0.95])
    mix = np.clip(0.5 + el / np.pi * 1.6, 0, 1)[..., None]
    return np.clip((1 - mix) * ground + mix * zenith + 0.25 * (bands[..., None] - 0.5), 0, 1)


def _camera_rays(c2w: np.ndarray, s: int, lens_model: str = "pinhole", distortion=(0.0,) * 6,
                 angle_x: float = CAMERA_ANGLE_X) -> np.ndarray:
    """Unit world directions (s, s, 3) through the pixel centres of an s x s camera with field of
    view angle_x (the NeRF-synthetic one by default), through the lens (tensorf.data.lens, float64)."""
    focal = 0.5 * s / math.tan(0.5 * angle_x)
    j, i = np.meshgrid(np.arange(s) + 0.5, np.arange(s) + 0.5, indexing="ij")
    x, y, z = lens.undistorted_directions((i - 0.5 * s) / focal, (j - 0.5 * s) / focal, np.asarray(distortion),
                                          lens_model, xp=np)
    dirs = np.stack([x, -y, -z], -1) @ c2w[:3, :3].T  # OpenCV camera axes to OpenGL
    return dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)


def _panorama_rays(c2w: np.ndarray, s: int) -> np.ndarray:
    """Unit world directions (s, 2 s, 3) through the pixel centres of a whole-sphere
    equirectangular panorama 2 s wide (tensorf.data.lens, float64)."""
    fx, fy, cx, cy = lens.equirect_intrinsics(2 * s, s)
    j, i = np.meshgrid(np.arange(s) + 0.5, np.arange(2 * s) + 0.5, indexing="ij")
    x, y, z = lens.undistorted_directions((i - cx) / fx, (j - cy) / fy, None, "equirectangular", xp=np)
    return np.stack([x, -y, -z], -1) @ c2w[:3, :3].T  # OpenCV camera axes to OpenGL


def render_view(c2w: np.ndarray, size: int, supersample: int = 2, sky: bool = False, lens_model: str = "pinhole",
                distortion=(0.0,) * 6, textured: bool = False, angle_x: float = CAMERA_ANGLE_X) -> np.ndarray:
    """RGBA (size, size, 4) uint8 image of the scene from one camera, through the lens ((size,
    2 size, 4): a whole-sphere equirectangular panorama); with sky, opaque, the backdrop at
    infinity behind the geometry; textured: see _shade."""
    s = size * supersample
    if lens_model == "equirectangular":
        dirs = _panorama_rays(c2w, s)
    else:
        dirs = _camera_rays(c2w, s, lens_model, distortion, angle_x)
    with np.errstate(invalid="ignore"):  # missed rays carry inf distances until masked
        rgb, alpha = _shade(np.broadcast_to(c2w[:3, 3], dirs.shape), dirs, textured)
    if sky:
        back = _sky(dirs) * ((0.5 + 0.5 * _grain(3.0 * dirs))[..., None] if textured else 1.0)
        rgb = rgb * alpha[..., None] + back * (1 - alpha[..., None])
        alpha = np.ones_like(alpha)
    # Premultiplied average over each pixel's subsamples, then un-premultiply for straight alpha.
    pm = np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1)
    h, w = dirs.shape[0] // supersample, dirs.shape[1] // supersample
    pm = pm.reshape(h, supersample, w, supersample, 4).mean((1, 3))
    a = pm[..., 3:]
    rgb_out = np.where(a > 0, pm[..., :3] / np.maximum(a, 1e-8), 1.0)
    return np.round(np.concatenate([rgb_out, a], -1) * 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """Write the generated scene in Blender format."""

    out: Path = Path("data/generated")
    """Output folder."""
    size: int = 64
    """Image width and height in pixels."""
    n_train: int = 60
    """Training views."""
    n_val: int = 8
    """Validation views."""
    n_test: int = 8
    """Test views."""


def generate(cfg: GenerateConfig = GenerateConfig()) -> Path:
    out = Path(cfg.out)
    for split, n, seed in (("train", cfg.n_train, 0), ("val", cfg.n_val, 1), ("test", cfg.n_test, 2)):
        (out / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for k, pose in enumerate(camera_poses(n, seed)):
            iio.imwrite(out / split / f"r_{k}.png", render_view(pose, cfg.size))
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": pose.tolist()})
        meta = {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}
        (out / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
    return out


def perturb_training_poses(scene: Path, degrees: float, shift: float, seed: int = 0) -> np.ndarray:
    """Give a generated scene's training cameras pose errors, as a capture's estimated poses have:
    each camera turned by `degrees` about a random axis through its centre and moved by `shift`
    (world units) in a random direction, in its own frame (c2w @ [[R, t], [0, 1]]). Rewrites
    transforms_train.json; returns the true camera-to-world matrices (N, 4, 4) it held."""
    path = Path(scene) / "transforms_train.json"
    meta = json.loads(path.read_text())
    rng = np.random.default_rng(seed)
    truth = []
    for frame in meta["frames"]:
        c2w = np.asarray(frame["transform_matrix"], np.float64)
        truth.append(c2w)
        axis, direction = rng.normal(size=3), rng.normal(size=3)
        axis, direction = axis / np.linalg.norm(axis), direction / np.linalg.norm(direction)
        k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
        angle = math.radians(degrees)
        motion = np.eye(4)
        motion[:3, :3] = np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)
        motion[:3, 3] = shift * direction
        frame["transform_matrix"] = (c2w @ motion).tolist()
    path.write_text(json.dumps(meta, indent=1))
    return np.stack(truth)


def vary_exposure(scene: Path, stops: float, tint: float, seed: int = 0, split: str = "train") -> np.ndarray:
    """Give a generated scene's photos of `split` each its own exposure and white balance, as a
    phone's automatic exposure does: every photo's colours scaled by a gain 2^u, u uniform in
    [-stops, stops], times a per-channel factor 1 + v, v uniform in [-tint, tint] (the object's
    colours only: the white behind it is the scene's background, not part of the photo's
    exposure). The gains are scaled to average 1 over the photos, so that the held-out views
    (left as rendered) show the training photos' average appearance, the one a field trained on
    them shows. Rewrites the split's PNGs; returns the maps applied (N, 3, 4) ([A | b], b = 0)."""
    meta = json.loads((Path(scene) / f"transforms_{split}.json").read_text())
    rng = np.random.default_rng(seed)
    n = len(meta["frames"])
    gains = 2.0 ** rng.uniform(-stops, stops, size=(n, 1)) * (1.0 + rng.uniform(-tint, tint, size=(n, 3)))
    gains /= gains.mean(axis=0)
    for frame, gain in zip(meta["frames"], gains, strict=True):
        path = Path(scene) / (frame["file_path"] + ".png")
        rgba = iio.imread(path).astype(np.float64) / 255.0
        rgba[..., :3] = np.clip(rgba[..., :3] * gain, 0.0, 1.0)
        iio.imwrite(path, np.round(rgba * 255.0).astype(np.uint8))
    return np.concatenate([gains[:, :, None] * np.eye(3), np.zeros((n, 3, 1))], axis=-1)


def forward_facing_poses(n: int, seed: int) -> np.ndarray:
    """(n, 4, 4): cameras on a 1.2 x 0.8 patch of the plane z = 3.5 above the scene, each looking
    at a point near the origin: a forward-facing capture like LLFF's."""
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        pos = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.4, 0.4), 3.5])
        target = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), 0.0])
        back = (pos - target) / np.linalg.norm(pos - target)
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, pos
        poses.append(c2w)
    return np.stack(poses)


def generate_capture(out: Path, size: int = 32, n: int = 16) -> Path:
    """The scene seen forward-facing, written twice into one folder: as LLFF (poses_bounds.npy +
    images/) and as a nerfstudio transforms.json over the same images. Opaque RGB (the backdrop
    composited), like a photo."""
    from tensorf.data.llff import write_llff

    out = Path(out)
    poses = forward_facing_poses(n, seed=3)
    rgba = np.stack([render_view(p, size) for p in poses]).astype(np.float64) / 255.0
    rgb = np.round((rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])) * 255).astype(np.uint8)
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    # Depth bounds per camera: the geometry lies between z = -0.6 and z = 0.85.
    bounds = np.stack([poses[:, 2, 3] - 0.85 - 0.2, poses[:, 2, 3] + 0.6 + 0.5], axis=1)
    write_llff(out, poses, bounds, rgb, focal)
    frames = [{"file_path": f"images/image{i:03d}.png", "transform_matrix": p.tolist()} for i, p in enumerate(poses)]
    meta = {"camera_model": "OPENCV", "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size,
            "h": size, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames}
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 images composited on white: what a photo of the scene would hold."""
    a = rgba[..., 3:].astype(np.float64) / 255.0
    return np.round(rgba[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)


def generate_lens_capture(out: Path, lens_model: str = "pinhole", distortion=(0.0,) * 6, size: int = 32,
                          n: int = 40, textured: bool = False, radius: float = CAMERA_RADIUS,
                          sky: bool = False, angle_x: float = CAMERA_ANGLE_X) -> Path:
    """The scene from all around (the Blender scene's cameras, at `radius`), photographed through
    a lens (tensorf.data.lens) and written as a nerfstudio transforms.json with opaque RGB images
    (composited on white, or on the backdrop at infinity with sky) and the lens's parameters."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    focal = 0.5 * size / math.tan(0.5 * angle_x)
    frames = []
    for k, pose in enumerate(camera_poses(n, seed=5, radius=radius)):
        rgba = render_view(pose, size, lens_model=lens_model, distortion=distortion, textured=textured, sky=sky,
                           angle_x=angle_x)
        iio.imwrite(out / "images" / f"frame{k:03d}.png", composite_on_white(rgba))
        frames.append({"file_path": f"images/frame{k:03d}.png", "transform_matrix": pose.tolist()})
    names = {"pinhole": "PINHOLE", "opencv": "OPENCV", "fisheye": "OPENCV_FISHEYE"}
    meta = {"camera_model": names[lens_model], "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2,
            "w": size, "h": size, **dict(zip(lens.PARAMS, map(float, distortion))), "frames": frames}
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out


def generate_depth_capture(out: Path, size: int = 32, n: int = 10) -> Path:
    """generate_lens_capture's pinhole capture with a depth map per frame, named by
    `depth_file_path` as nerfstudio writes them: 16-bit PNGs in millimetres (frame 2's at half
    the image's size, as a phone's depth map is smaller than its photo) and one .npy (frame 1)."""
    out = generate_lens_capture(out, size=size, n=n)
    meta = json.loads((out / "transforms.json").read_text())
    (out / "depth").mkdir(exist_ok=True)
    for k, frame in enumerate(meta["frames"]):
        depth = render_depth(np.asarray(frame["transform_matrix"]), size) * 1000.0
        if k == 1:
            frame["depth_file_path"] = f"depth/frame{k:03d}.npy"
            np.save(out / frame["depth_file_path"], depth)
            continue
        frame["depth_file_path"] = f"depth/frame{k:03d}.png"
        iio.imwrite(out / frame["depth_file_path"], np.round(depth[::2, ::2] if k == 2 else depth).astype(np.uint16))
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out


def generate_panorama_capture(out: Path, size: int = 16, n: int = 24, seed: int = 7) -> Path:
    """The scene from inside a ring of 360-degree cameras (1.6 to 2.6 from its centre, 0.1 to 0.9
    up, each turned a random way about the vertical: a panorama's heading is arbitrary), with the
    backdrop at infinity all around, written as a nerfstudio transforms.json of EQUIRECTANGULAR
    images size x 2 size (nerfstudio's intrinsics for a whole sphere: fl_x = w / 2, fl_y = h)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        az, r, up = 2 * math.pi * k / n, rng.uniform(1.6, 2.6), rng.uniform(0.1, 0.9)
        heading = rng.uniform(0, 2 * math.pi)
        pose = np.eye(4)
        # Camera axes x (right), y (up: the world's z), z (backward) turned by `heading` about z.
        pose[:3, :3] = np.array([[math.cos(heading), 0.0, math.sin(heading)],
                                 [math.sin(heading), 0.0, -math.cos(heading)], [0.0, 1.0, 0.0]])
        pose[:3, 3] = [r * math.cos(az), r * math.sin(az), up]
        iio.imwrite(out / "images" / f"pano{k:03d}.png", render_view(pose, size, sky=True, lens_model="equirectangular",
                                                                     textured=True)[..., :3])
        frames.append({"file_path": f"images/pano{k:03d}.png", "transform_matrix": pose.tolist()})
    meta = {"camera_model": "EQUIRECTANGULAR", "fl_x": float(size), "fl_y": float(size), "cx": float(size),
            "cy": size / 2, "w": 2 * size, "h": size, "frames": frames}
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out


def generate_llff_360(out: Path, size: int = 32, n: int = 40) -> Path:
    """The scene from all around in LLFF layout (poses_bounds.npy + images/), with the backdrop at
    infinity behind it: a 360-degree capture as mip-NeRF 360's scenes ship."""
    from tensorf.data.llff import write_llff

    poses = np.stack(camera_poses(n, seed=6))
    rgb = np.stack([render_view(p, size, sky=True)[..., :3] for p in poses])
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    # Depth bounds: the geometry lies within 1.3 of the origin, the cameras at CAMERA_RADIUS.
    bounds = np.tile([CAMERA_RADIUS - 1.3, CAMERA_RADIUS + 1.3], (n, 1))
    write_llff(Path(out), poses, bounds, rgb, focal)
    return Path(out)


def generate_unbounded(out: Path, size: int = 32, n: int = 40, radius: float = 2.6) -> Path:
    """The scene seen from all around, low (cameras on a ring of `radius`, 0-25 degrees up,
    looking at the origin), with a backdrop at infinity above and around it: a 360-degree capture
    of an unbounded scene, written as a nerfstudio transforms.json with opaque RGB images."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    rng = np.random.default_rng(4)
    for k in range(n):
        az = 2 * math.pi * k / n + rng.uniform(0, 0.1)
        el = math.radians(rng.uniform(0, 25))
        pose = look_at(radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]))
        iio.imwrite(out / "images" / f"frame{k:03d}.png", render_view(pose, size, sky=True)[..., :3])
        frames.append({"file_path": f"images/frame{k:03d}.png", "transform_matrix": pose.tolist()})
    meta = {"camera_angle_x": CAMERA_ANGLE_X, "w": size, "h": size, "frames": frames}
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out


def turntable_backdrop(size: int, textured: bool = False) -> np.ndarray:
    """(size, size, 3) in [0, 1]: a room behind a turntable, fixed in the image (a floor, a wall
    and blocks of colour, with some fine texture so it is not one flat colour; textured: the
    grain of _grain, for SIFT to find corners in)."""
    j, i = np.meshgrid(np.arange(size) / size, np.arange(size) / size, indexing="ij")
    floor = (j > 0.55)[..., None]
    fine = _grain(np.stack([i, j, np.zeros_like(i)], -1)) if textured else np.sin(40 * i + 7 * j)
    room = np.where(floor, [0.2, 0.45, 0.25], [0.8, 0.75, 0.65]) * ((0.6 + 0.4 * fine) if textured else (0.85 + 0.15 * fine))[..., None]
    block = ((np.abs(i - 0.15) < 0.1) & (np.abs(j - 0.3) < 0.15))[..., None]
    lamp = ((np.abs(i - 0.85) < 0.06) & (j < 0.5))[..., None]
    return np.clip(np.where(block, [0.1, 0.2, 0.6], np.where(lamp, [0.9, 0.85, 0.2], room)), 0, 1)


def room_light(position: np.ndarray, drift: float) -> float:
    """The room's brightness behind a generated turntable that drifts by `drift`, in the view whose
    camera stands at `position`: darkest half a turn from the x axis (the object's shadow on the
    room turns with it), so it follows the turn, not the frames' order."""
    return 1.0 - drift * (1.0 - math.cos(math.atan2(position[1], position[0]))) / 2.0


def generate_turntable(out: Path, size: int = 32, n: int = 40, drift: float = 0.0, textured: bool = False,
                       radius: float = CAMERA_RADIUS, angle_x: float = CAMERA_ANGLE_X) -> Path:
    """The scene turned on a turntable in front of a camera that stands still: the poses circle
    the scene (as SfM on the object would find them; at `radius`, field of view angle_x) while
    the room behind it keeps its place in every image (turntable_backdrop). drift: the room's
    light changes with the turn, down to 1 - drift times its brightness (room_light); textured:
    the scene and the room in _grain's texture (photos -> poses).
    Written as a nerfstudio transforms.json with opaque RGB."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    room = turntable_backdrop(size, textured)
    frames = []
    for k, pose in enumerate(camera_poses(n, seed=7, radius=radius)):
        rgba = render_view(pose, size, textured=textured, angle_x=angle_x).astype(np.float64) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + room_light(pose[:3, 3], drift) * room * (1.0 - rgba[..., 3:])
        iio.imwrite(out / "images" / f"frame{k:03d}.png", np.round(rgb * 255).astype(np.uint8))
        frames.append({"file_path": f"images/frame{k:03d}.png", "transform_matrix": pose.tolist()})
    meta = {"camera_angle_x": angle_x, "w": size, "h": size, "frames": frames}
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out


if __name__ == "__main__":
    print(generate(tyro.cli(GenerateConfig)))
