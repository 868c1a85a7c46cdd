"""Orbit cameras around a scene, derived from its training cameras."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class OrbitFrame:
    """Where the training cameras look: a centre, an up axis, a radius and an elevation."""

    center: np.ndarray
    up: np.ndarray
    radius: float
    elevation_deg: float


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
    return OrbitFrame(center=center, up=up, radius=radius, elevation_deg=float(np.degrees(np.arcsin(sin_el)).mean()))


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
    """n cameras evenly spaced in azimuth around frame.up. Returns (n, 4, 4)."""
    helper = np.array([1.0, 0, 0]) if abs(frame.up[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(frame.up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(frame.up, e1)
    el = math.radians(frame.elevation_deg)
    poses = []
    for k in range(n):
        th = 2 * math.pi * k / n
        direction = math.cos(el) * (math.cos(th) * e1 + math.sin(th) * e2) + math.sin(el) * frame.up
        poses.append(look_at(frame.center + frame.radius * direction, frame.center, frame.up))
    return np.stack(poses)


def depth_range(frame: OrbitFrame, aabb) -> tuple[float, float]:
    """Near/far distances for colouring depth seen from the orbit: the box's half diagonal
    either side of the orbit radius."""
    half_diag = 0.5 * float(np.linalg.norm(np.subtract(aabb[1], aabb[0])))
    return max(frame.radius - half_diag, 0.0), frame.radius + half_diag
