"""Camera paths for viewers, derived from the training cameras: orbits around a scene, and NeRF's
spiral for forward-facing captures."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class OrbitFrame:
    """Where the training cameras look: a centre, an up axis, a radius and an elevation; arc:
    the azimuths (start, end, radians, in orbit_poses' basis) the cameras cover when they leave a
    gap of more than ARC_GAP_DEG around the centre (a capture from one side: an orbit would look
    at what no camera saw), else None (all the way round)."""

    center: np.ndarray
    up: np.ndarray
    radius: float
    elevation_deg: float
    arc: tuple[float, float] | None = None


ARC_GAP_DEG = 90.0


def _basis(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane normal to up: azimuth 0 and 90 degrees."""
    helper = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


def covered_arc(offsets: np.ndarray, up: np.ndarray) -> tuple[float, float] | None:
    """The azimuth range (start, end) of camera offsets (N, 3) from the centre, going the short way
    round their largest gap; None when no gap exceeds ARC_GAP_DEG."""
    e1, e2 = _basis(up)
    az = np.sort(np.arctan2(offsets @ e2, offsets @ e1))
    gaps = np.diff(np.concatenate([az, az[:1] + 2 * math.pi]))
    k = int(np.argmax(gaps))
    if math.degrees(gaps[k]) <= ARC_GAP_DEG:
        return None
    start = float(az[(k + 1) % len(az)])
    end = float(az[k]) + (2 * math.pi if k + 1 < len(az) else 0.0)
    return start, end


def orbit_from_cameras(c2w: np.ndarray) -> OrbitFrame:
    """c2w (N, 4, 4) OpenGL cameras. The centre is the point nearest every optical axis (least
    squares), up is the mean camera up vector, radius and elevation are the cameras' means."""
    origins, forward = c2w[:, :3, 3], -c2w[:, :3, 2]
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    proj = np.eye(3)[None] - forward[:, :, None] * forward[:, None, :]
    center = np.linalg.lstsq(proj.sum(0), np.einsum("nij,nj->i", proj, origins), rcond=None)[0]
    up = c2w[:, :3, 1].mean(0)
    up = up / np.linalg.norm(up)
    offsets = origins - center
    radius = float(np.linalg.norm(offsets, axis=-1).mean())
    sin_el = np.clip(offsets @ up / np.linalg.norm(offsets, axis=-1), -1, 1)
    return OrbitFrame(center=center, up=up, radius=radius, elevation_deg=float(np.degrees(np.arcsin(sin_el)).mean()),
                      arc=covered_arc(offsets, up))


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-world looking from position at target, OpenGL convention."""
    back = position - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right = right / np.linalg.norm(right)
    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, position
    return c2w


def orbit_poses(frame: OrbitFrame, n: int) -> np.ndarray:
    """n cameras around frame.up: evenly spaced all the way round, or, when the cameras cover only
    frame.arc, sweeping it there and back (a cosine, so the turns are smooth). Returns (n, 4, 4)."""
    e1, e2 = _basis(frame.up)
    el = math.radians(frame.elevation_deg)
    poses = []
    for k in range(n):
        if frame.arc is None:
            th = 2 * math.pi * k / n
        else:
            a, b = frame.arc
            th = a + (b - a) * 0.5 * (1 - math.cos(2 * math.pi * k / n))
        direction = math.cos(el) * (math.cos(th) * e1 + math.sin(th) * e2) + math.sin(el) * frame.up
        poses.append(look_at(frame.center + frame.radius * direction, frame.center, frame.up))
    return np.stack(poses)


def depth_range(distance: float, aabb) -> tuple[float, float]:
    """Near/far distances for colouring depth seen from `distance` away from the box's centre
    (an orbit's radius, a viewer's camera): the box's half diagonal either side of it."""
    half_diag = 0.5 * float(np.linalg.norm(np.subtract(aabb[1], aabb[0])))
    return max(distance - half_diag, 0.0), distance + half_diag


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def view_matrix(back: np.ndarray, up: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(3, 4) camera-to-world with z along `back`, y as close to `up` as possible."""
    z = _normalize(back)
    x = _normalize(np.cross(up, z))
    return np.stack([x, np.cross(z, x), z, position], axis=1)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """(3, 4): the mean position, the summed backward axis and the summed up axis (NeRF poses_avg)."""
    return view_matrix(c2w[:, :3, 2].sum(0), c2w[:, :3, 1].sum(0), c2w[:, :3, 3].mean(0))


def spiral_path(c2w: np.ndarray, bounds: np.ndarray, n: int = 120, rotations: int = 2) -> np.ndarray:
    """(n, 4, 4) cameras on NeRF's spiral (render_path_spiral): around the average pose, radii
    the 90th percentile of the camera offsets, looking at a focus depth between the nearest and
    5x the farthest bound (dt 0.75), two turns, z oscillating at half the rate."""
    avg = average_pose(c2w)
    up = _normalize(c2w[:, :3, 1].sum(0))
    close, far = bounds.min() * 0.9, bounds.max() * 5.0
    focus = 1.0 / ((1.0 - 0.75) / close + 0.75 / far)
    radii = np.percentile(np.abs(c2w[:, :3, 3]), 90, axis=0)
    poses = []
    for theta in np.linspace(0.0, 2 * math.pi * rotations, n + 1)[:-1]:
        local = np.array([math.cos(theta), -math.sin(theta), -math.sin(0.5 * theta)]) * radii
        position = avg[:, :3] @ local + avg[:, 3]
        target = avg[:, :3] @ np.array([0.0, 0.0, -focus]) + avg[:, 3]
        pose = np.eye(4)
        pose[:3] = view_matrix(position - target, up, position)
        poses.append(pose)
    return np.stack(poses).astype(np.float32)


def homogeneous(c2w: np.ndarray) -> np.ndarray:
    """(N, 3, 4) poses as (N, 4, 4)."""
    out = np.zeros((len(c2w), 4, 4))
    out[:, :3], out[:, 3, 3] = c2w, 1.0
    return out
