"""Is a capture forward-facing or 360 degrees? Decided from its cameras alone.

NDC rays (the forward-facing treatment) only hold when every camera looks roughly the same way:
the frustum from the near plane to infinity must contain the whole scene for all of them. A 360
capture (cameras around an object, or looking outward from its middle) has viewing directions
all over the sphere. So the test is how far the viewing directions spread from their mean: the
NeRF paper's LLFF scenes stay within about 20 degrees (fern: 10), object rings and mip-NeRF 360's
scenes span 90 degrees or more. FORWARD_SPREAD_DEG sits between, with room either side.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

Kind = Literal["forward-facing", "360"]
FORWARD_SPREAD_DEG = 45.0
OVERRIDE_FLAG = "--data.kind"


@dataclasses.dataclass(frozen=True)
class CaptureKind:
    """kind, and why: spread_deg the largest angle between a camera's viewing direction and the
    cameras' mean viewing direction; forced: given on the command line rather than measured."""

    kind: Kind
    spread_deg: float
    forced: bool = False
    reason: str | None = None
    """Why, when it was not measured from the viewing directions (a panorama's cameras see all around)."""

    def describe(self) -> str:
        why = "as given" if self.forced else self.reason or (
            f"viewing directions spread {self.spread_deg:.0f} degrees from their mean, "
            f"{'under' if self.kind == 'forward-facing' else 'over'} {FORWARD_SPREAD_DEG:.0f}")
        other = "360" if self.kind == "forward-facing" else "forward-facing"
        return f"read as a {self.kind} capture ({why}; override with {OVERRIDE_FLAG} {other})"


def viewing_spread_deg(c2w: np.ndarray) -> float:
    """Largest angle (degrees) between a camera's viewing direction (-z of c2w (N, 4, 4) or
    (N, 3, 4)) and the normalised sum of them all; 180 when they cancel out."""
    forward = -np.asarray(c2w, np.float64)[:, :3, 2]
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    mean = forward.sum(0)
    if np.linalg.norm(mean) < 1e-6 * len(forward):
        return 180.0
    mean /= np.linalg.norm(mean)
    return float(np.degrees(np.arccos(np.clip(forward @ mean, -1.0, 1.0))).max())


def classify(c2w: np.ndarray, given: str = "auto", panorama: bool = False) -> CaptureKind:
    """The capture's kind from its cameras c2w (N, 4, 4), or `given` when it is not "auto"; 360
    for panoramas (equirectangular cameras), which see all around whichever way they face."""
    spread = viewing_spread_deg(c2w)
    if given != "auto":
        return CaptureKind(given, spread, forced=True)  # type: ignore[arg-type]
    if panorama:
        return CaptureKind("360", spread, reason="equirectangular panoramas see all around")
    return CaptureKind("forward-facing" if spread < FORWARD_SPREAD_DEG else "360", spread)
