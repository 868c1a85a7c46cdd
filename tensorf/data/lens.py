"""Lens distortion: the camera models of COLMAP and nerfstudio, and their inverse.

Distortion acts on normalised image coordinates in OpenCV's axes (x right, y down, one unit =
one focal length): a pinhole projects a camera-space direction to (x, y) = (X / Z, Y / Z), the
lens moves it to distort(x, y), and the pixel is (fx xd + cx, fy yd + cy). Rays are cast by
inverting this per pixel: the pixel's normalised coordinates are undistorted iteratively (Newton,
a fixed number of steps, as COLMAP's IterativeUndistortion and nerfstudio's
radial_and_tangential_undistort do), so every consumer of the ray formula (training pool, eval,
viewers, mesh) sees the same rays and the photos are used as shot. Undistorting the images once
at load would resample them (blur) and, for a fisheye, lose the edges a pinhole cannot hold.

Models (params are always [k1, k2, k3, k4, p1, p2], nerfstudio's order; unused ones are 0):
- "pinhole": none.
- "opencv": Brown-Conrady, radial 1 + k1 r^2 + k2 r^4 + k3 r^6 + k4 r^8 and tangential p1, p2
  (COLMAP's SIMPLE_RADIAL, RADIAL and OPENCV are this with fewer terms; k4 is Metashape's r^8
  term, not OpenCV's rational k4, which no reader accepts).
- "fisheye": OpenCV's equidistant fisheye, the angle theta from the optical axis mapped to the
  image radius theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8) (COLMAP's
  OPENCV_FISHEYE, SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE). Rays are built from theta directly, so
  fields of view past 180 degrees work.
- "equirectangular": a 360-degree camera's panorama. Its "normalised coordinates" are the
  longitude and latitude of the ray (x right, y down, z forward: longitude atan2(x, z), latitude
  atan2(y, hypot(x, z))), so with equirect_intrinsics (fx = W / 2 pi, fy = H / pi, the centre at
  the image's) the image spans the whole sphere, the forward direction at its centre. This is
  Agisoft Metashape's spherical camera (its manual, Appendix C) and nerfstudio's EQUIRECTANGULAR
  (cameras.py: theta = -pi x, phi = pi (0.5 - y), with x, y normalised by fx = W / 2, fy = H).
  No parameters.

Every function takes the array module (numpy for float64 checks, jax.numpy inside jit).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

MODELS = ("pinhole", "opencv", "fisheye", "equirectangular")
PARAMS = ("k1", "k2", "k3", "k4", "p1", "p2")
NEWTON_STEPS = 10  # nerfstudio's default; converges to float64 round-off for photo lenses (tests/test_lens.py)


def _split(params, xp):
    p = xp.asarray(params)
    return tuple(p[..., i] for i in range(6))


def distort(x, y, params, model: str, xp=jnp):
    """Normalised pinhole coordinates (x, y) (any shape S) to distorted ones, params (S, 6) or (6,)."""
    k1, k2, k3, k4, p1, p2 = _split(params, xp)
    if model == "pinhole":
        return x, y
    if model == "opencv":
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        return (x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
                y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y)
    if model == "fisheye":
        r = xp.sqrt(x * x + y * y)
        theta = xp.arctan(r)
        scale = xp.where(r > 1e-12, _theta_d(theta, k1, k2, k3, k4) / xp.where(r > 1e-12, r, 1.0), 1.0)
        return x * scale, y * scale
    raise ValueError(f"unknown camera model {model!r}; one of {MODELS}")


def _theta_d(theta, k1, k2, k3, k4):
    t2 = theta * theta
    return theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))


def undistort(xd, yd, params, model: str, xp=jnp, steps: int = NEWTON_STEPS):
    """Inverse of distort for "pinhole" and "opencv": the pinhole coordinates (x, y) that the lens
    moved to (xd, yd). Newton's method on distort(x, y) - (xd, yd) from (xd, yd)."""
    if model == "pinhole":
        return xd, yd
    if model != "opencv":
        raise ValueError(f"undistort is for pinhole and opencv; {model} rays come from undistorted_directions")
    k1, k2, k3, k4, p1, p2 = _split(params, xp)
    x, y = xd, yd
    for _ in range(steps):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        d_radial = 2.0 * (k1 + r2 * (2.0 * k2 + r2 * (3.0 * k3 + 4.0 * r2 * k4)))  # d radial / d r2, times 2 (d r2/dx = 2x)
        fx = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
        fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
        fx_x = radial + x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
        fx_y = x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        fy_x = x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
        fy_y = radial + y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
        det = fx_x * fy_y - fx_y * fy_x
        det = xp.where(xp.abs(det) > 1e-12, det, 1e-12)
        x = x - (fx * fy_y - fy * fx_y) / det
        y = y - (fy * fx_x - fx * fy_x) / det
    return x, y


def fisheye_angle(theta_d, params, xp=jnp, steps: int = NEWTON_STEPS):
    """The angle from the optical axis theta whose distorted image radius is theta_d (Newton)."""
    k1, k2, k3, k4, _, _ = _split(params, xp)
    theta = theta_d
    for _ in range(steps):
        t2 = theta * theta
        f = _theta_d(theta, k1, k2, k3, k4) - theta_d
        df = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
        theta = theta - f / xp.where(xp.abs(df) > 1e-12, df, 1e-12)
    return theta


def equirect_intrinsics(width: float, height: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a panorama width x height spanning the whole sphere: normalised
    coordinates are then longitude in [-pi, pi] and latitude in [-pi/2, pi/2]."""
    return width / (2.0 * math.pi), height / math.pi, width / 2.0, height / 2.0


def equirect_row_weights(height: int, cy: float, fy: float) -> np.ndarray:
    """(height,) float32 cos(latitude) at each panorama row's centre, latitude (row + 0.5 - cy) / fy:
    the solid angle a row's pixels cover against an equator row's (WS-PSNR's weights)."""
    return np.maximum(np.cos((np.arange(height) + 0.5 - cy) / fy), 0.0).astype(np.float32)


def undistorted_directions(xd, yd, params, model: str, xp=jnp):
    """Camera-space ray directions (OpenCV axes: x right, y down, z forward; not unit length) of
    the distorted normalised coordinates (xd, yd): (x, y, 1) for the pinhole models, (sin theta
    xd / r, sin theta yd / r, cos theta) for the fisheye, the unit vector at longitude xd and
    latitude yd for the equirectangular."""
    if model == "equirectangular":
        return xp.sin(xd) * xp.cos(yd), xp.sin(yd), xp.cos(xd) * xp.cos(yd)
    if model != "fisheye":
        x, y = undistort(xd, yd, params, model, xp)
        return x, y, xp.ones_like(x)
    r = xp.sqrt(xd * xd + yd * yd)
    theta = fisheye_angle(r, params, xp)
    s = xp.where(r > 1e-12, xp.sin(theta) / xp.where(r > 1e-12, r, 1.0), 1.0)
    return xd * s, yd * s, xp.cos(theta)


def project(directions, params, model: str, xp=jnp):
    """Camera-space directions (..., 3) in OpenCV axes to distorted normalised coordinates: the
    forward model, for tests and for rendering the generated scene through a lens. Fisheye
    directions may point sideways or behind (theta up to pi)."""
    X, Y, Z = directions[..., 0], directions[..., 1], directions[..., 2]
    if model == "equirectangular":
        return xp.arctan2(X, Z), xp.arctan2(Y, xp.sqrt(X * X + Z * Z))
    if model != "fisheye":
        return distort(X / Z, Y / Z, params, model, xp)
    k1, k2, k3, k4, _, _ = _split(params, xp)
    r = xp.sqrt(X * X + Y * Y)
    theta = xp.arctan2(r, Z)
    scale = xp.where(r > 1e-12, _theta_d(theta, k1, k2, k3, k4) / xp.where(r > 1e-12, r, 1.0), 1.0)
    return X * scale, Y * scale
