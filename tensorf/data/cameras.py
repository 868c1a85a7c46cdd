"""Cameras, one per view (OpenGL convention: the camera looks down -z with y up): pinhole
intrinsics and, optionally, lens distortion (tensorf.data.lens)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from tensorf.data import lens


@dataclasses.dataclass(frozen=True)
class Ndc:
    """A forward-facing capture's normalised device coordinates (NeRF, Mildenhall et al. 2020,
    appendix C; ndc_rays): the frustum in front of the plane z = -near becomes the cube
    [-1, 1]^3, x and y scaled by sx = 2 fx / W and sy = 2 fy / H of the capture's cameras.

    One projective map of world space, fixed with the capture: every camera that renders the
    field (a viewer's with its own field of view and window, a camera path's) casts its rays
    through this map, not through one made from its own intrinsics, which would reshape the
    scene with each field of view and aspect."""

    near: float
    sx: float
    sy: float

    @staticmethod
    def of_camera(near: float, fx: float, fy: float, cx: float, cy: float) -> "Ndc":
        """The map that a camera with these intrinsics fills (principal point taken as centred)."""
        return Ndc(float(near), float(fx / cx), float(fy / cy))

    @property
    def scale(self) -> tuple[float, float]:
        return self.sx, self.sy


@dataclasses.dataclass(frozen=True)
class Cameras:
    """N cameras. c2w (N, 4, 4) camera-to-world; fx, fy, cx, cy (N,) in pixels, with the
    principal point measured from the image's top-left corner; width, height (N,) in pixels.

    ndc: None for rays in world space; for forward-facing captures the capture's normalised
    device coordinates (Ndc), in which rays are cast instead.

    model: the lens model shared by the cameras (lens.MODELS); distortion (N, 6) its parameters
    [k1, k2, k3, k4, p1, p2] per camera (None: all zero)."""

    c2w: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    width: np.ndarray
    height: np.ndarray
    ndc: Ndc | None = None
    model: str = "pinhole"
    distortion: np.ndarray | None = None

    def __post_init__(self):
        if self.model not in lens.MODELS:
            raise ValueError(f"camera model {self.model!r} is not one of {lens.MODELS}")
        dist = np.zeros((len(self.c2w), 6)) if self.distortion is None else self.distortion
        object.__setattr__(self, "distortion", np.asarray(dist, np.float64).reshape(len(self.c2w), 6))

    @staticmethod
    def centered(c2w: np.ndarray, width: int, height: int, focal: float, ndc: Ndc | None = None) -> "Cameras":
        """Cameras with one focal length and the principal point at the image centre (Blender, LLFF)."""
        n = len(c2w)
        full = lambda v, dt=np.float64: np.full(n, v, dt)  # noqa: E731
        return Cameras(np.asarray(c2w, np.float32), full(focal), full(focal), full(width / 2), full(height / 2),
                       full(width, np.int64), full(height, np.int64), ndc)

    _PER_CAMERA = ("c2w", "fx", "fy", "cx", "cy", "width", "height", "distortion")

    def __len__(self) -> int:
        return len(self.c2w)

    def subset(self, indices) -> "Cameras":
        idx = np.asarray(indices, np.int64)
        return dataclasses.replace(self, **{k: getattr(self, k)[idx] for k in self._PER_CAMERA})

    def resized(self, width, height) -> "Cameras":
        """The same cameras rendering images of another size (intrinsics scaled to match): one
        width and height for all, or (N,) arrays, one per camera."""
        sx, sy = width / self.width, height / self.height
        n = len(self)
        return dataclasses.replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                                   width=np.full(n, width, np.int64), height=np.full(n, height, np.int64))

    def through_pixel_corners(self) -> "Cameras":
        """The same cameras casting each pixel's ray through its top-left corner instead of its
        centre (NeRF's original rays): the principal point moves half a pixel (NDC's map stays
        the capture's)."""
        return dataclasses.replace(self, cx=self.cx + 0.5, cy=self.cy + 0.5)

    def with_poses(self, c2w: np.ndarray) -> "Cameras":
        """Pinhole cameras at new poses with the focal lengths and image size of the capture's
        most common image size (the wider on a tie, so photos taken both ways round orbit in
        landscape; its first camera) (orbits, spirals: novel views are rendered without the
        capture's lens distortion). A panorama's novel views are pinholes of 90 degrees, half its
        width and its full height (a 2:1 panorama's: square)."""
        sizes = list(zip(self.width.tolist(), self.height.tolist()))
        pick = max(range(len(sizes)), key=lambda i: (sizes.count(sizes[i]), sizes[i][0] / sizes[i][1], -i))
        like = self.subset(np.full(len(c2w), pick, np.int64))
        if self.model == "equirectangular":
            w, h = max(int(like.width[0]) // 2, 1), int(like.height[0])
            full = lambda v, dt=np.float64: np.full(len(c2w), v, dt)  # noqa: E731
            like = dataclasses.replace(like, fx=full(w / 2), fy=full(w / 2), cx=full(w / 2), cy=full(h / 2),
                                       width=full(w, np.int64), height=full(h, np.int64))
        return dataclasses.replace(like, c2w=np.asarray(c2w, np.float32), model="pinhole", distortion=None)

    def rays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rays through the pixel centres of one camera: origins, unit directions (H, W, 3) and
        the pixels' cone radii (H, W) (pixel_rays)."""
        h, w = int(self.height[index]), int(self.width[index])
        y, x = np.divmod(np.arange(h * w, dtype=np.int32), w)
        o, d, r = self.pixels_rays(index, x, y)
        return o.reshape(h, w, 3), d.reshape(h, w, 3), r.reshape(h, w)

    def pixels_rays(self, index: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rays of one camera through the pixels (x, y) (int32, any shape S): origins, directions
        (S, 3) and radii (S,). Compiled once per shape of x, not per image size."""
        o, d, r = _pixel_rays_jit(self.c2w[index], *(np.float32(v[index]) for v in (self.fx, self.fy, self.cx, self.cy)),
                                  x, y, self.ndc, self.distortion[index].astype(np.float32), self.model)
        return np.asarray(o), np.asarray(d), np.asarray(r)

    def to_json(self) -> dict:
        return {**{k: np.asarray(getattr(self, k)).tolist() for k in self._PER_CAMERA},
                "ndc": None if self.ndc is None else dataclasses.asdict(self.ndc), "model": self.model}

    @staticmethod
    def from_json(d: dict) -> "Cameras":
        c2w = np.asarray(d["c2w"], np.float32).reshape(-1, 4, 4)
        n = len(c2w)
        vec = lambda k, dt=np.float64: np.asarray(d[k], dt).reshape(n)  # noqa: E731
        fx, fy, cx, cy = vec("fx"), vec("fy"), vec("cx"), vec("cy")
        ndc = None if d.get("ndc") is None else Ndc(**d["ndc"])
        if ndc is None and d.get("ndc_near") is not None:
            # Runs written before Ndc kept only the near plane; their rays took the map from
            # the cameras' intrinsics, which an LLFF capture shares.
            ndc = Ndc.of_camera(d["ndc_near"], fx[0], fy[0], cx[0], cy[0])
        # Runs written before lens models existed have neither key: pinhole.
        return Cameras(c2w, fx, fy, cx, cy, vec("width", np.int64), vec("height", np.int64),
                       ndc, d.get("model", "pinhole"), d.get("distortion"))


def degenerate_rotation(c2w: np.ndarray) -> bool:
    """Whether a camera-to-world matrix's 3x3 block cannot orient a camera: a zero axis, or axes
    that lie in one plane. Such a camera's rays have no direction, and training's loss turns NaN
    at its first batch, far from the file at fault. A uniform scale is harmless (directions are
    normalised) and passes."""
    rot = np.asarray(c2w, np.float64)[:3, :3]
    lengths = np.linalg.norm(rot, axis=0)
    return bool(lengths.min() <= 0 or abs(np.linalg.det(rot)) < 1e-6 * lengths.prod())


def focal_from_fov(width: int, fov_x: float) -> float:
    return 0.5 * width / math.tan(0.5 * fov_x)


def pixel_rays(c2w, fx, fy, cx, cy, x, y, ndc: Ndc | None = None, distortion=None,
               model: str = "pinhole") -> tuple[jax.Array, jax.Array, jax.Array]:
    """Rays through pixel centres (x, y) (integer pixel indices, any shape S) of cameras
    c2w (S, 4, 4) or (4, 4) and intrinsics (S,) or scalars: origins and unit directions (S, 3)
    and radii (S,), float32; in the capture's NDC when ndc is given; through the lens `model`
    with parameters distortion (S, 6) or (6,) (tensorf.data.lens). The radius is that of the
    cone through the pixel's footprint at unit distance: 2 / sqrt(12) times the angle to the
    next pixel's ray (mip-NeRF's base radius, measured between unit directions since distance
    here is along them). The one ray formula of the project: host views and batches drawn on
    the device both use it, so they agree to the bit."""
    c2w = jnp.asarray(c2w, jnp.float32)
    rot = c2w[..., :3, :3]

    def world_directions(px: jax.Array) -> jax.Array:
        # Normalised image coordinates in OpenCV's axes (y down), where lens models are defined.
        xd = (px + 0.5 - cx) / fx
        yd = (y.astype(jnp.float32) + 0.5 - cy) / fy
        if model == "pinhole":
            u, v, w = xd, -yd, jnp.ones_like(xd)
        else:
            u, v, w = lens.undistorted_directions(xd, yd, jnp.asarray(distortion, jnp.float32), model)
            v = -v
        # Written out per camera axis: the same rotation as a broadcast product summed and then
        # divided by jnp.linalg.norm came out wrong for 40k rays on XLA CPU (jax 0.10.2) under jit,
        # rays shifted by whole pixels (test_data.py holds the float64 reference).
        return u[..., None] * rot[..., :, 0] + v[..., None] * rot[..., :, 1] - w[..., None] * rot[..., :, 2]

    px = x.astype(jnp.float32)
    dirs, beside = world_directions(px), world_directions(px + 1.0)
    origins = jnp.broadcast_to(c2w[..., :3, 3], dirs.shape)
    if ndc is not None:
        (origins, dirs), (_, beside) = (ndc_rays(origins, d, ndc.sx, ndc.sy, ndc.near) for d in (dirs, beside))
    dirs = dirs * jax.lax.rsqrt(jnp.sum(dirs * dirs, axis=-1, keepdims=True))
    beside = beside * jax.lax.rsqrt(jnp.sum(beside * beside, axis=-1, keepdims=True))
    radii = jnp.sqrt(jnp.sum((beside - dirs) ** 2, axis=-1)) * (2.0 / math.sqrt(12.0))
    return origins, dirs, radii


def ndc_rays(origins, directions, sx, sy, near: float) -> tuple[jax.Array, jax.Array]:
    """World rays (S, 3) of forward-facing cameras (looking down -z) in normalised device
    coordinates (NeRF, Mildenhall et al. 2020, appendix C): the frustum from the plane z = -near
    to infinity becomes the cube [-1, 1]^3, x and y scaled by the projection sx = 2 fx / W,
    sy = 2 fy / H (fx / cx and fy / cy for a centred principal point). Origins move to the near
    plane (NDC z = -1); directions are not normalised (NDC z reaches +1 at t = 1)."""
    ox, oy, oz = (origins[..., i] for i in range(3))
    dx, dy, dz = (directions[..., i] for i in range(3))
    t = -(near + oz) / dz
    ox, oy, oz = ox + t * dx, oy + t * dy, oz + t * dz
    o = jnp.stack([-sx * ox / oz, -sy * oy / oz, 1.0 + 2.0 * near / oz], axis=-1)
    d = jnp.stack([-sx * (dx / dz - ox / oz), -sy * (dy / dz - oy / oz), -2.0 * near / oz], axis=-1)
    return o, d


def ndc_to_world(points: np.ndarray, sx: float, sy: float, near: float) -> np.ndarray:
    """World points (S, 3) of points in normalised device coordinates (ndc_rays' space, with the
    projection scale sx, sy and near plane of the cameras): NDC z = 1 + 2 near / z inverted for
    z, then x and y unprojected at that depth. NDC z = 1 (infinity) gives non-finite points."""
    points = np.asarray(points, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = 2.0 * near / (points[..., 2] - 1.0)
        return np.stack([-points[..., 0] * z / sx, -points[..., 1] * z / sy, z], axis=-1)


def ndc_world_directions(origins, directions, scale: tuple[float, float]) -> jax.Array:
    """The unit world directions (S, 3) of NDC rays (ndc_rays, with directions normalised
    after), given the projection scale (sx, sy): NDC direction z is 2 before normalising, and
    world dx/dz = -(d'x + o'x) / sx (the inverse of ndc_rays' formulas), the ray looking down -z."""
    d = directions * (2.0 / directions[..., 2:3])
    sx, sy = scale
    w = jnp.stack([(d[..., 0] + origins[..., 0]) / sx, (d[..., 1] + origins[..., 1]) / sy,
                   -jnp.ones_like(d[..., 0])], axis=-1)
    return w * jax.lax.rsqrt(jnp.sum(w * w, axis=-1, keepdims=True))


_pixel_rays_jit = jax.jit(pixel_rays, static_argnums=(7, 9))
