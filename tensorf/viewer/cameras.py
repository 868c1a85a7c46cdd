"""The viewer's cameras. viser describes a browser's camera in OpenCV axes (+z forward, +y down)
as a wxyz quaternion, a position and a vertical field of view; this project's cameras use OpenGL
axes (tensorf.data.cameras). Conversions both ways, so a training camera shown in the browser and
the browser's camera rendered by the model are the same camera."""

from __future__ import annotations

import math

import numpy as np
from viser import transforms as vtf

from tensorf.data.cameras import Cameras, Ndc

_GL_TO_CV = np.diag([1.0, -1.0, -1.0])  # the same flip maps both ways


def viser_pose(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of an OpenGL camera-to-world (3 or 4, 4)."""
    rot = np.asarray(c2w, np.float64)[:3, :3] @ _GL_TO_CV
    return vtf.SO3.from_matrix(rot).wxyz, np.asarray(c2w, np.float64)[:3, 3]


def c2w_from_viser(wxyz, position) -> np.ndarray:
    """OpenGL camera-to-world (4, 4) float32 of a viser camera."""
    c2w = np.eye(4)
    c2w[:3, :3] = vtf.SO3(np.asarray(wxyz, np.float64)).as_matrix() @ _GL_TO_CV
    c2w[:3, 3] = position
    return c2w.astype(np.float32)


def vertical_fov(cameras: Cameras, index: int) -> float:
    """Vertical field of view (radians) of one camera; for a panorama, which sees all around, that
    of the pinhole its novel views are rendered with (Cameras.with_poses)."""
    if cameras.model == "equirectangular":
        cameras, index = cameras.with_poses(cameras.c2w[index:index + 1]), 0
    return 2.0 * math.atan(0.5 * float(cameras.height[index]) / float(cameras.fy[index]))


def image_size(aspect: float, long_side: int) -> tuple[int, int]:
    """(width, height) of an image of this aspect (width / height) whose longer side is long_side."""
    aspect = max(float(aspect), 1e-3)
    if aspect >= 1.0:
        return int(long_side), max(1, round(long_side / aspect))
    return max(1, round(long_side * aspect)), int(long_side)


def view_camera(wxyz, position, fov_y: float, width: int, height: int, ndc: Ndc | None = None) -> Cameras:
    """One pinhole camera with square pixels and a centred principal point, as the browser draws;
    forward-facing runs (ndc) cast its rays in the NDC of their training cameras."""
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    return Cameras.centered(c2w_from_viser(wxyz, position)[None], width, height, focal, ndc)
