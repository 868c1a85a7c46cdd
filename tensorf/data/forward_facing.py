"""The forward-facing treatment (NeRF's LLFF scenes): rays in normalised device coordinates.

A forward-facing capture's scene runs from just in front of its cameras to infinity, and NDC
(tensorf.data.cameras.Ndc) maps that frustum into a cube where a grid spends its cells evenly
in disparity: fine near the cameras, coarse far off, as the images resolve it. What NDC needs
is a frame and a unit: the cameras' average pose as the world's axes (they look down -z) and
the scene's nearest depth at 1 / BD_FACTOR, so that NDC's near plane (z = -NDC_NEAR) lies just
in front of everything (NeRF's load_llff.py, bd_factor 0.75; official TensoRF
dataLoader/llff.py). LLFF's poses_bounds.npy carries those depths; a capture with sparse
points (COLMAP, or a transforms.json with its ply) gives them as LLFF's imgs2poses.py computes
them, from the points in front of each camera.
"""

from __future__ import annotations

import numpy as np

from tensorf.data.cameras import Ndc
from tensorf.data.orbit import average_pose, homogeneous

BD_FACTOR = 0.75  # NeRF load_llff: the nearest bound lands at 1 / 0.75 after rescaling
NDC_NEAR = 1.0  # NDC near plane (official TensoRF llff: ndc_rays_blender(..., near=1.0))
# Official TensoRF dataLoader/llff.py: the box in NDC, and near/far [0, 1] along NDC rays that
# reach z = +1 at t = 1. Rays here are unit length, so "far" is the box diagonal; the box clips them.
NDC_BOX = ((-1.5, -1.67, -1.0), (1.5, 1.67, 1.0))
NDC_NEAR_FAR = (0.0, float(np.linalg.norm(np.subtract(NDC_BOX[1], NDC_BOX[0]))))
# LLFF's imgs2poses.py (Fyusion/LLFF llff/poses/pose_utils.py, save_poses) bounds each image by
# the 0.1 and 99.9 percentiles of the depths of the points it observes (their COLMAP tracks).
# Here every point inside the camera's frustum counts, stray and hidden ones too, so the cut is
# wider: on fern posed from its 20 photos (1844 points) 0.1 / 99.9 gave a far / near ratio of
# 8.3, 1 / 99 gave 4.4 against the 4.7 of fern's own poses_bounds.npy (a near bound too close
# wastes NDC depth on empty space). Reading the tracks does not help at that density (stop 62):
# LLFF's own rule on them gave 9.5 (with ~500 points an image, its 0.1 percentile is the
# nearest stray point), and 1 / 99 on them the same 4.4 as the frustum's.
BOUND_PERCENTILES = (1.0, 99.0)
MIN_POINTS_SEEN = 10


def point_bounds(c2w: np.ndarray, intrinsics: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """(N, 2) near and far depth of the points (M, 3) in front of each camera (c2w (N, 4, 4)
    OpenGL axes, intrinsics (N, 6+): fx, fy, cx, cy, width, height) inside its image
    (BOUND_PERCENTILES of their depths); None when a camera has fewer than MIN_POINTS_SEEN."""
    out = []
    for pose, k in zip(c2w, intrinsics):
        local = (points - pose[:3, 3]) @ pose[:3, :3]  # camera axes: x right, y up, looking down -z
        depth = -local[:, 2]
        front = depth > 1e-9
        u = k[2] + k[0] * local[front, 0] / depth[front]
        v = k[3] - k[1] * local[front, 1] / depth[front]
        inside = (u >= 0) & (u <= k[4]) & (v >= 0) & (v <= k[5])
        if inside.sum() < MIN_POINTS_SEEN:
            return None
        out.append(np.percentile(depth[front][inside], BOUND_PERCENTILES))
    return np.asarray(out)


def ndc_frame(c2w: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NDC's world for cameras c2w (N, 4, 4) with depth bounds (N, 2): the poses (N, 4, 4) in
    their average pose's frame, scaled so the nearest bound sits at 1 / BD_FACTOR; the (4, 4)
    similarity from c2w's world to that one, and the bounds in its units."""
    scale = 1.0 / (float(bounds.min()) * BD_FACTOR)
    recentred = np.linalg.inv(homogeneous(average_pose(c2w[:, :3])[None])[0])
    poses = recentred @ c2w
    poses[:, :3, 3] *= scale  # the cameras keep their axes: only positions scale
    return poses, np.diag([scale] * 3 + [1.0]) @ recentred, bounds * scale


def capture_ndc(intrinsics: np.ndarray) -> Ndc:
    """The NDC that every camera's image (intrinsics (N, 6+)) fits in: the widest camera's
    projection (2 fx / W, 2 fy / H), so no image reaches past the NDC box's margin."""
    k = np.asarray(intrinsics, np.float64)
    return Ndc(NDC_NEAR, float((2 * k[:, 0] / k[:, 4]).min()), float((2 * k[:, 1] / k[:, 5]).min()))


def fits_ndc(c2w: np.ndarray, intrinsics: np.ndarray, ndc: Ndc) -> bool:
    """Whether NDC can hold cameras c2w (N, 4, 4) in NDC's frame (ndc_frame) with intrinsics
    (N, 6+): each camera behind the near plane, its image's corners (as a pinhole) looking ahead,
    and its optical axis meeting the near plane inside NDC_BOX (an image's edges may leave the
    box, as in LLFF's scenes with the most camera motion). A capture the classifier calls
    forward-facing can still fail it: cameras that walk towards the scene (the front ones past
    the near plane the nearest surface sets for the rear ones), or that turn up to 45 degrees
    from their mean. It keeps world rays."""
    k = np.asarray(intrinsics, np.float64)
    corners = np.stack([np.stack([(u - k[:, 2]) / k[:, 0], -(v - k[:, 3]) / k[:, 1], -np.ones(len(k))], -1)
                        for u, v in ((0, 0), (k[:, 4], 0), (0, k[:, 5]), (k[:, 4], k[:, 5]))], 1)  # (N, 4, 3)
    o, d = c2w[:, :3, 3], -c2w[:, :3, 2]
    if not (np.all(o[:, 2] > -ndc.near) and np.all(np.einsum("nij,ncj->nci", c2w[:, :3, :3], corners)[..., 2] < 0)):
        return False
    at = o + (-(ndc.near + o[:, 2]) / d[:, 2])[:, None] * d  # on the plane z = -near
    x, y = ndc.sx * at[:, 0] / ndc.near, ndc.sy * at[:, 1] / ndc.near
    return bool(np.all(np.abs(x) <= NDC_BOX[1][0]) and np.all(np.abs(y) <= NDC_BOX[1][1]))
