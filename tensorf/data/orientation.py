"""EXIF orientation: photos a phone stored sideways, turned upright with their cameras.

A phone held upright stores the photo's pixels sideways and tags it with EXIF Orientation 6 (or
8, or 3 upside down; 2, 4, 5 and 7 mirror too); viewers obey the tag, COLMAP (on purpose, one
camera for both ways round: colmap/colmap#1456) and imageio do not. A camera posed on the stored
pixels is as good a camera turned about its optical axis (mirrored, for 2, 4, 5, 7), so the
photo and its camera can be turned together: the same rays through the same pixels, with the
camera's up the photo's up, so renders stand upright and an orbit's up (the cameras' mean) is
the scene's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# EXIF's Orientation tag: 1 is upright; 2-8 say how a viewer turns or mirrors the stored pixels.
ORIENTATION = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # width and height trade places


def upright_size(orientation: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the upright view of a stored image of width x height, and, the swap
    being its own inverse, the stored size of an upright view of width x height."""
    return (height, width) if orientation in SWAPS_SIDES else (width, height)


def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """An image array (H, W, ...) as a viewer shows it under EXIF `orientation` (PIL's
    ImageOps.exif_transpose, checked for all eight in tests/test_captures.py)."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.rot90(a, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def upright_image(image, orientation: int):
    """A PIL image turned and mirrored as EXIF `orientation` tells a viewer to (what upright does
    to arrays, for images of any PIL mode, kept as PIL images: photos copied with their EXIF)."""
    from PIL import Image

    t = Image.Transpose
    op = {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_270,
          7: t.TRANSVERSE, 8: t.ROTATE_90}.get(orientation)
    return image if op is None else image.transpose(op)


def exif_orientations(files: list[Path]) -> list[tuple[int, tuple[int, int] | None]]:
    """Each file's EXIF orientation (1 when it has none) and stored size (width, height), from its
    header alone; (1, None) for a file PIL cannot open (read_rgb names it)."""
    from PIL import Image

    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                out.append((int(im.getexif().get(ORIENTATION, 1)), im.size))
        except Exception:
            out.append((1, None))
    return out


def pixel_map(orientation: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A (2, 2) signed permutation and t (2,) with stored = A @ shown + t for continuous pixel
    coordinates (pixel centres at +0.5) of a stored image of width x height and its upright view."""
    grid = np.stack(np.meshgrid(np.arange(3.0), np.arange(2.0)), axis=-1) + 0.5  # (2, 3, 2): stored (x, y)
    shown = upright(grid, orientation)  # each shown pixel's stored coordinates
    a = np.stack([shown[0, 1] - shown[0, 0], shown[1, 0] - shown[0, 0]], axis=1)
    # The image's centre stays its centre under every one of the eight.
    t = np.array([width / 2, height / 2]) - a @ (np.asarray(upright_size(orientation, width, height), np.float64) / 2)
    return a, t


def turn_camera(orientation: int, c2w: np.ndarray, intrinsics: tuple[float, float, float, float, int, int],
                distortion: tuple[float, ...]) -> tuple[np.ndarray, tuple, tuple[float, ...]]:
    """The camera of a photo's upright view, given the camera of its stored pixels: c2w (4, 4)
    OpenGL axes, intrinsics (fx, fy, cx, cy, width, height), distortion [k1, k2, k3, k4, p1, p2]
    (tensorf.data.lens). Every shown pixel casts the ray of the stored pixel it came from.

    With stored = A shown + t, the normalised coordinates obey n = A n' when f' = |A^T f| and
    c' = A^T (c - t); the camera axes turn by A (c2w' = c2w diag(A, 1) in OpenCV axes). Radial
    terms see only the radius and stay; the tangential term is r^2 P + 2 (P . n) n with
    P = (p2, p1), so P' = A^T P. Mirrors (2, 4, 5, 7) give a c2w of determinant -1."""
    fx, fy, cx, cy, w, h = intrinsics
    a, t = pixel_map(orientation, int(w), int(h))
    f2 = np.abs(a.T @ np.array([fx, fy]))
    c2 = a.T @ (np.array([cx, cy]) - t)
    k1, k2, k3, k4, p1, p2 = distortion
    q2, q1 = a.T @ np.array([p2, p1])
    flip = np.diag([1.0, -1.0])  # OpenGL's y up against OpenCV's y down (z sign cancels: it is left alone)
    turn = np.eye(4)
    turn[:2, :2] = flip @ a @ flip
    return (np.asarray(c2w, np.float64) @ turn,
            (float(f2[0]), float(f2[1]), float(c2[0]), float(c2[1]), *upright_size(orientation, w, h)),
            (k1, k2, k3, k4, float(q1), float(q2)))
