"""Turntable captures: the object turns, the camera and the room stand still.

The poses of such a capture are the object's motion relative to the camera, so they are right
for the object and wrong for everything else in the frame: the room keeps its place in the image
while the poses say the camera circled it. A radiance field of a static scene cannot hold such a
background; it fills the box with view-dependent haze to explain it, and the haze covers the
object in held-out views (docs/captures.md, the `head` capture).

So the background is modelled where it lives, in the image: an image fixed to the camera (a
per-pixel median of training views, which the object, moving through each pixel in only some
views, does not reach), composited behind the field instead of a flat colour.

The room is fixed to the camera only roughly. Over a capture it moves and changes in the image
(a nudged camera, changing light, the object's shadows and reflections): on head, views next
to each other share about 75% of their pixels, views half a turn apart about 25%. So each view's
background is the median of the NEIGHBOURS training views whose cameras stood nearest its own
(relative to the object: on a turntable, the nearest turns, which is also the nearest in time
except where the turn closes), never the view itself, so that no view's pixels reach its own
background and a held-out view's reach none. On head's held-out views these explain 74% of the
pixels (within MATCH), against 58% for the median of every training view (benchmarks/results.md).
Every ray of a training or eval view carries its own background (Rays.background); render_360's
orbits get the median of every training view (camera_background), the viewer the flat one.

Detection, from the images of a capture already read as 360 (forward-facing captures barely move
the camera, so their background stays put in the image for a different reason): the share of
pixels that match the median in most views. A camera that circles the scene leaves none (the
generated rings, instant-ngp's fox: 0.0); the head turntable leaves 0.29. Pixels of one flat
colour (a light box's white sweep, a sky) match too but need no image: the median over them must
also vary.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

OVERRIDE_FLAG = "--data.turntable"
DETECT_SIZE = 64  # detection works on views shrunk to about this many pixels across
NEIGHBOURS = 8  # a view's background: the median of this many training views whose cameras stood nearest
MATCH = 0.04  # mean absolute difference (of [0, 1] RGB) within which a pixel matches the median
MOST_VIEWS = 0.8  # a static pixel matches the median in more than this share of the views
STATIC_SHARE = 0.1  # a turntable: more than this share of the pixels is static ...
STATIC_CONTRAST = 0.05  # ... and their median colours vary by more than this (standard deviation)


@dataclasses.dataclass(frozen=True)
class Turntable:
    """The decision: on (a background image is used), static_share and contrast as measured
    (None when not measured), forced: given on the command line."""

    on: bool
    static_share: float | None = None
    contrast: float | None = None
    forced: bool = False

    def describe(self) -> str:
        if self.forced:
            why = "as given"
        else:
            why = (f"{100 * self.static_share:.0f}% of the pixels match the views' median in most views, "
                   f"{'over' if self.static_share > STATIC_SHARE else 'under'} {100 * STATIC_SHARE:.0f}%")
            if self.static_share > STATIC_SHARE and not self.on:
                why += ", but they are one flat colour"
        if self.on:
            return (f"a turntable: the background stands still in the image ({why}), so it is modelled as "
                    f"images fixed to the camera, each view's from the views whose cameras stood nearest; "
                    f"override with {OVERRIDE_FLAG} no")
        return f"not a turntable ({why}; override with {OVERRIDE_FLAG} yes)"


def shrink(images: np.ndarray, size: int = DETECT_SIZE) -> np.ndarray:
    """images (N, H, W, 3) area-averaged by the integer factor that brings their longer side
    nearest to `size` pixels."""
    n, h, w, _ = images.shape
    f = max(1, round(max(h, w) / size))
    crop = images[:, : h // f * f, : w // f * f]
    return crop.reshape(n, h // f, f, w // f, f, 3).mean(axis=(2, 4))


def measure(images: np.ndarray) -> tuple[float, float]:
    """(share of static pixels, standard deviation of their median colour) of views (N, H, W, 3)."""
    small = shrink(np.asarray(images, np.float32))
    median = np.median(small, axis=0)
    close = np.abs(small - median).mean(axis=-1) < MATCH
    static = close.mean(axis=0) > MOST_VIEWS
    contrast = float(median[static].std(axis=0).mean()) if static.any() else 0.0
    return float(static.mean()), contrast


def decide(images: np.ndarray, given: Literal["auto", "yes", "no"] = "auto") -> Turntable:
    """Whether views (N, H, W, 3) of a 360 capture come from a turntable, or `given`."""
    if given != "auto":
        return Turntable(on=given == "yes", forced=True)
    share, contrast = measure(images)
    return Turntable(on=share > STATIC_SHARE and contrast > STATIC_CONTRAST, static_share=share, contrast=contrast)


def camera_background(images: np.ndarray) -> np.ndarray:
    """The background fixed to the camera (H, W, 3) float32: the per-pixel median of the views
    (N, H, W, 3), row block by row block to bound the memory np.median copies."""
    images = np.asarray(images)
    out = np.empty(images.shape[1:], np.float32)
    rows = max(1, (1 << 24) // max(1, images.shape[0] * images.shape[2] * 3))
    for r in range(0, images.shape[1], rows):
        out[r : r + rows] = np.median(images[:, r : r + rows], axis=0)
    return out


def neighbour_backgrounds(images: np.ndarray, centres: np.ndarray, targets: np.ndarray, own=None,
                          k: int = NEIGHBOURS) -> np.ndarray:
    """Each target's background (T, H, W, 3) float32: the per-pixel median of the k training views
    (images (N, H, W, 3), cameras at centres (N, 3)) whose cameras stood nearest the target's
    (targets (T, 3)). own (T,): the training view each target is (-1: none), left out of its own."""
    images, centres, targets = np.asarray(images), np.asarray(centres), np.asarray(targets)
    own = np.full(len(targets), -1) if own is None else np.asarray(own)
    out = np.empty((len(targets),) + images.shape[1:], np.float32)
    for i, (t, o) in enumerate(zip(targets, own)):
        gap = np.linalg.norm(centres - t, axis=-1)
        if o >= 0:
            gap[o] = np.inf
        near = np.argsort(gap, kind="stable")[: min(k, int(np.isfinite(gap).sum()))]
        out[i] = np.median(images[near], axis=0)
    return out
