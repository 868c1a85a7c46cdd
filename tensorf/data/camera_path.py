"""Camera paths for videos: keyframes (placed in the viewer) interpolated into frames, and the file
that holds them.

The file is nerfstudio's camera_path.json, the one `ns-render camera-path` reads (nerfstudio
`scripts/render.py` `get_path_from_json`): `render_width`, `render_height`, `fps`, `seconds` and
`camera_path`, one entry per frame with `camera_to_world` (16 numbers, a row-major 4x4 in OpenGL
axes, like this project's cameras) and `fov` (vertical, degrees; focal = height / (2 tan(fov / 2))).
This project adds `keyframes` (the same two keys) and `loop`, so a path can be interpolated again.
The poses are in the run's world frame: the one the viewer shows and RUN/cameras.json holds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tensorf.data.colmap import qvec_to_rotation, rotation_to_qvec
from tensorf.errors import UserError


@dataclasses.dataclass(frozen=True)
class CameraPath:
    """c2w (N, 4, 4) and fov_deg (N,) (vertical) per frame; the images' size and frame rate."""

    c2w: np.ndarray
    fov_deg: np.ndarray
    width: int
    height: int
    fps: float

    def focal(self) -> np.ndarray:
        """(N,) focal lengths in pixels (square pixels, as the viewer draws)."""
        return 0.5 * self.height / np.tan(0.5 * np.radians(self.fov_deg))


def _catmull_rom(p: np.ndarray, seg: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Centripetal Catmull-Rom (alpha 1/2; no cusps or loops within a segment) through the points
    p (K + 2, D), padded with one neighbour at each end: the point at fraction t (F,) of segment
    seg (F,), which runs from p[seg + 1] to p[seg + 2]. Barry and Goldman's pyramid."""
    p0, p1, p2, p3 = (p[seg + k] for k in range(4))
    # Knot spacing: the square root of the distance; a floor keeps keyframes at one place apart.
    gap = lambda a, b: np.maximum(np.linalg.norm(b - a, axis=-1, keepdims=True) ** 0.5, 1e-6)  # noqa: E731
    t0 = np.zeros_like(t[:, None])
    t1 = t0 + gap(p0, p1)
    t2 = t1 + gap(p1, p2)
    t3 = t2 + gap(p2, p3)
    u = t1 + t[:, None] * (t2 - t1)
    lerp = lambda a, b, ta, tb: ((tb - u) * a + (u - ta) * b) / (tb - ta)  # noqa: E731
    a1, a2, a3 = lerp(p0, p1, t0, t1), lerp(p1, p2, t1, t2), lerp(p2, p3, t2, t3)
    b1, b2 = lerp(a1, a2, t0, t2), lerp(a2, a3, t1, t3)
    return lerp(b1, b2, t1, t2)


def _padded(points: np.ndarray, loop: bool) -> np.ndarray:
    """The spline's control points for keyframes `points` (K, D): a loop's run around to the
    first keyframe again, with the keyframes either side as end neighbours; an open path's, each
    end mirrored, so it starts and ends without a kink."""
    if loop:
        return np.concatenate([points[-1:], points, points[:2]])
    return np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])


def _same_side(q: np.ndarray) -> np.ndarray:
    """Quaternions (M, 4) each turned to its predecessor's side (the first to its successor's):
    q and -q are one rotation, and the path between neighbours must take the short way."""
    q = q.copy()
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    if np.dot(q[0], q[1]) < 0:
        q[0] = -q[0]
    return q


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def _qinv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _qlog(q: np.ndarray) -> np.ndarray:
    """(..., 3): half the rotation vector of unit quaternions (..., 4), taken the short way."""
    q = np.where(q[..., :1] < 0, -q, q)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    half = np.arctan2(s, q[..., :1])
    return q[..., 1:] * np.where(s > 1e-12, half / np.maximum(s, 1e-12), 1.0)


def _qexp(v: np.ndarray) -> np.ndarray:
    half = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.concatenate([np.cos(half), v * np.where(half > 1e-12, np.sin(half) / np.maximum(half, 1e-12), 1.0)], -1)


def _slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(F, 4): the short way from a to b (F, 4), fraction t (F,) of the angle."""
    return _qmul(a, _qexp(t[:, None] * _qlog(_qmul(_qinv(a), b))))


def _squad(ring: np.ndarray, seg: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Shoemake's spherical spline (squad) through unit quaternions: ring (M, 4) holds the
    keyframes with one neighbour at each end; the rotation at fraction t (F,) of segment seg (F,),
    from ring[seg + 1] to ring[seg + 2]. It passes every keyframe, turns without a kink, and
    between two keyframes alone (mirrored neighbours) turns at an even rate, as slerp."""
    q = ring[1:-1]
    inner = _qmul(q, _qexp(-0.25 * (_qlog(_qmul(_qinv(q), ring[2:])) + _qlog(_qmul(_qinv(q), ring[:-2])))))
    qa, qb, sa, sb = q[seg], q[seg + 1], inner[seg], inner[seg + 1]
    return _slerp(_slerp(qa, qb, t), _slerp(sa, sb, t), 2.0 * t * (1.0 - t))


def _quaternion_ring(quats: np.ndarray, loop: bool) -> np.ndarray:
    """The keyframes' quaternions (K, 4) with their spline neighbours: a loop's run around to the
    first again with the keyframes either side; an open path's ends mirrored (q0 q1^-1 q0), which
    makes its end tangents those of a slerp."""
    if loop:
        ring = np.concatenate([quats[-1:], quats, quats[:2]])
    else:
        mirror = lambda a, b: _qmul(_qmul(a, _qinv(b)), a)  # noqa: E731
        ring = np.concatenate([mirror(quats[:1], quats[1:2]), quats, mirror(quats[-1:], quats[-2:-1])])
    return _same_side(ring)


PACINGS = ("keyframes", "speed")
"""How a path's time is spent: the same between each two keyframes (nerfstudio's viewer's
default), or at an even speed along the whole path, however unevenly the keyframes were placed."""


def _spline(c2w: np.ndarray, quats: np.ndarray, loop: bool, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (F, 3), quaternions (F, 4), segment (F,), fraction (F,)) at path parameters u
    (F,) in [0, segments]: segment k runs from keyframe k to keyframe k + 1."""
    segments = len(c2w) if loop else len(c2w) - 1
    seg = np.minimum(np.floor(u).astype(np.int64), segments - 1)
    t = np.clip(u - seg, 0.0, 1.0)
    return _catmull_rom(_padded(c2w[:, :3, 3], loop), seg, t), _squad(_quaternion_ring(quats, loop), seg, t), seg, t


def _even_speed(c2w: np.ndarray, quats: np.ndarray, loop: bool, frames: int) -> np.ndarray:
    """Path parameters (frames,) an even distance apart along the path: distance measured by how
    far the camera moves and turns, sqrt(d^2 + (r a)^2) for a move d and a turn a, r the
    keyframes' mean distance from their centre (circling a subject at radius r weighs turning
    and moving alike; turning in place is paced by the angle alone), over 64 samples a segment."""
    segments = len(c2w) if loop else len(c2w) - 1
    u = np.linspace(0.0, segments, 64 * segments + 1)
    position, q, _, _ = _spline(c2w, quats, loop, u)
    move = np.linalg.norm(np.diff(position, axis=0), axis=-1)
    turn = 2.0 * np.arccos(np.clip(np.abs(np.sum(q[1:] * q[:-1], -1)), 0.0, 1.0))
    reach = float(np.linalg.norm(c2w[:, :3, 3] - c2w[:, :3, 3].mean(0), axis=-1).mean()) or 1.0
    step = np.hypot(move, reach * turn)
    if step.max() <= 0:  # every keyframe the same view
        return np.linspace(0.0, segments, frames, endpoint=not loop)
    travelled = np.concatenate([[0.0], np.cumsum(np.maximum(step, 1e-9 * step.max()))])
    return np.interp(np.linspace(0.0, travelled[-1], frames, endpoint=not loop), travelled, u)


def interpolate(c2w: np.ndarray, fov_deg: np.ndarray, frames: int, loop: bool = False,
                pacing: str = "keyframes") -> tuple[np.ndarray, np.ndarray]:
    """`frames` poses (frames, 4, 4) and vertical fields of view (frames,) through the keyframes
    c2w (K, 4, 4), fov_deg (K,), timed as `pacing` says (PACINGS). Positions follow a centripetal
    Catmull-Rom spline through the keyframes and orientations a spherical one (squad, the short
    way round), so the camera passes every keyframe exactly (with pacing "keyframes", the frame
    at each keyframe's time is it) and moves and turns without a kink; the field of view changes
    linearly. loop: the path returns to its first keyframe, and the last frame stops one step
    short of it, so the video repeats without a doubled frame."""
    c2w = np.asarray(c2w, np.float64).reshape(-1, 4, 4)
    fov_deg = np.asarray(fov_deg, np.float64).reshape(len(c2w))
    if frames < 1:
        raise UserError("a camera path needs at least one frame")
    if len(c2w) == 1:
        return np.repeat(c2w, frames, 0).astype(np.float32), np.repeat(fov_deg, frames)
    if pacing not in PACINGS:
        raise UserError(f"pacing {pacing!r}: one of {', '.join(PACINGS)}")
    quats = _same_side(np.stack([rotation_to_qvec(r) for r in c2w[:, :3, :3]]))
    segments = len(c2w) if loop else len(c2w) - 1
    if frames == 1:
        u = np.zeros(1)
    elif pacing == "speed":
        u = _even_speed(c2w, quats, loop, frames)
    else:
        u = np.linspace(0.0, segments, frames, endpoint=not loop)
    position, q, seg, t = _spline(c2w, quats, loop, u)
    out = np.tile(np.eye(4), (len(u), 1, 1))
    out[:, :3, :3] = qvec_to_rotation(q)
    out[:, :3, 3] = position
    fovs = np.concatenate([fov_deg, fov_deg[:1]]) if loop else fov_deg
    return out.astype(np.float32), (1 - t) * fovs[seg] + t * fovs[seg + 1]


def write_camera_path(path: Path, keyframes: np.ndarray, fov_deg: np.ndarray, width: int, height: int,
                      fps: float = 24.0, seconds: float = 4.0, loop: bool = False,
                      pacing: str = "keyframes") -> CameraPath:
    """Interpolate the keyframes into round(fps * seconds) frames and write them, with the
    keyframes, as a camera_path.json at `path`; the frames written."""
    frames = max(1, round(fps * seconds))
    c2w, fov = interpolate(keyframes, fov_deg, frames, loop, pacing)
    entry = lambda m, f: {"camera_to_world": np.asarray(m, np.float64).reshape(16).tolist(), "fov": float(f)}  # noqa: E731
    body = {"camera_type": "perspective", "render_width": int(width), "render_height": int(height),
            "fps": float(fps), "seconds": float(seconds), "loop": bool(loop), "pacing": pacing,
            "keyframes": [entry(m, f) for m, f in zip(np.asarray(keyframes).reshape(-1, 4, 4), np.ravel(fov_deg))],
            "camera_path": [entry(m, f) for m, f in zip(c2w, fov)]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1))
    return CameraPath(c2w, fov, int(width), int(height), float(fps))


def read_camera_path(path: Path) -> CameraPath:
    """The frames of a camera_path.json (this project's, or nerfstudio's); one error line naming
    the file for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such camera path; save one from the viewer (Camera path > Save) or give "
                        "nerfstudio's camera_path.json")
    fix = "save it again from the viewer, or fix it (nerfstudio's camera_path.json format)"
    try:
        body = json.loads(path.read_text())
        kind = str(body.get("camera_type", "perspective")).lower()
        if kind != "perspective":
            raise ValueError(f"camera_type {kind!r}: only perspective cameras are rendered")
        frames = body["camera_path"]
        if not isinstance(frames, list) or not frames:
            raise ValueError("'camera_path' must be a non-empty list of frames")
        c2w = np.stack([np.asarray(f["camera_to_world"], np.float64).reshape(4, 4) for f in frames])
        fov = np.asarray([float(f["fov"]) for f in frames])
        width, height = int(body["render_width"]), int(body["render_height"])
        fps = float(body.get("fps", 24.0))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise UserError(f"{path}: malformed camera path ({detail}); {fix}") from None
    if not (np.isfinite(c2w).all() and np.isfinite(fov).all()) or ((fov <= 0) | (fov >= 180)).any():
        raise UserError(f"{path}: malformed camera path (non-finite poses, or a fov outside (0, 180) degrees); {fix}")
    if width < 1 or height < 1 or fps <= 0:
        raise UserError(f"{path}: render_width, render_height and fps must be positive; {fix}")
    return CameraPath(c2w.astype(np.float32), fov, width, height, fps)


def read_keyframes(path: Path) -> tuple[np.ndarray, np.ndarray, float, float, bool, str] | None:
    """The keyframes of a camera_path.json this project wrote, to edit them again: (c2w (K, 4, 4),
    fov_deg (K,), seconds, fps, loop, pacing); None for a file without them (nerfstudio's
    keyframes are its viewer's own). One error line naming the file when they are malformed."""
    path = Path(path)
    try:
        body = json.loads(path.read_text())
        keys = body.get("keyframes") if isinstance(body, dict) else None
        if not keys or not all(isinstance(k, dict) and "camera_to_world" in k for k in keys):
            return None
        c2w = np.stack([np.asarray(k["camera_to_world"], np.float64).reshape(4, 4) for k in keys])
        fov = np.asarray([float(k["fov"]) for k in keys])
        pacing = str(body.get("pacing", "keyframes"))
        if pacing not in PACINGS:
            raise ValueError(pacing)
        return (c2w, fov, float(body.get("seconds", 4.0)), float(body.get("fps", 24.0)), bool(body.get("loop", False)),
                pacing)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: unreadable keyframes ({e.__class__.__name__}); delete the file or save the path "
                        "again") from None
