"""The values each numeric command-line option may take, checked before a command starts.

A count of zero or a negative size used to get through to the first jitted step or the first
loop, and came back as a ZeroDivisionError, an XLA shape error or an OverflowError from a socket
(--log-every 0, --batch-size 0, --model.n-voxels-init 0, --viewer-port 99999, --resolution 0 10).
Here it is one line naming the flag. Options are found by their field's name, which means the
same in every config and every command (`chunk` is rays per call wherever it appears); a name
missing from RANGES and FREE fails tests/test_option_ranges.py, so a new option gets a range
when it is added.
"""

from __future__ import annotations

import dataclasses
import math

from tensorf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Range:
    low: float
    high: float = math.inf
    low_open: bool = False  # the low end itself is out

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        if self.high < math.inf:
            return f"in {'(' if self.low_open else '['}{_shown(self.low)}, {_shown(self.high)}]"
        if self.low_open:
            return "positive" if self.low == 0 else f"above {_shown(self.low)}"
        return f"at least {_shown(self.low)}"


def _shown(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


COUNT = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1, low_open=True)

RANGES: dict[str, Range] = {
    **dict.fromkeys((
        # steps, batches, logs and renders
        "steps", "batch_size", "log_every", "keep_checkpoints", "quality_views", "render_chunk",
        "viewer_every", "num_devices", "num_processes", "chunk", "resolution", "points", "downscale",
        "max_image_size", "decay_steps",
        # model sizes: grids, factors, widths, sample counts (TensoRF, NeRF, mip-NeRF, mip-NeRF 360)
        "n_voxels_init", "n_voxels_final", "density_components", "appearance_components", "appearance_features",
        "mlp_hidden", "max_samples", "appearance_samples", "cp_density_components", "cp_appearance_components",
        "proposal_samples", "proposal_final_samples", "proposal_resolution", "proposal_components", "net_depth",
        "net_width", "net_width_condition", "coarse_samples", "samples", "proposal_depth", "proposal_width",
    ), COUNT),
    "frames": Range(2),  # an orbit or a video's frames for posing: one is no motion
    "hold_every": Range(2),  # every N-th image is a test view: 1 would leave nothing to train on
    **dict.fromkeys((
        "eval_every", "checkpoint_every", "quality_every_s", "turntable_warmup", "feature_pe", "view_pe",
        "position_freqs", "direction_freqs", "min_deg_point", "max_deg_point", "deg_view", "fine_samples", "net_depth_condition",
        "skip_layer", "lr_delay_steps", "warmup_steps", "anneal_steps", "proposal_anneal_steps", "upsample_steps",
        "mask_update_steps", "mask_threshold", "shade_threshold", "l1_weight",
        "l1_weight_rest", "tv_weight_density", "tv_weight_appearance", "ortho_weight", "interlevel_weight",
        "distortion_weight", "depth_weight", "coarse_loss_weight", "density_noise", "trans_penalty", "rot_penalty",
        "penalty", "resample_padding", "proposal_padding", "rgb_padding", "near_gradient_distance", "lr_grid",
        "lr_mlp", "lr", "lr_final", "lr_delay_mult", "fit_poses", "reload_every_s", "process_id", "step", "views",
        "eval_views",
    ), NON_NEGATIVE),
    **dict.fromkeys((
        "fps", "radius", "step_ratio", "distance_scale", "depth_sigma", "contraction_shell", "grad_max_norm",
        "time_budget_minutes", "stop_after_minutes", "focal_px", "lr_decay_ratio", "init_scale",
    ), POSITIVE),
    **dict.fromkeys(("min_opacity", "density_budget", "shade_budget"), FRACTION),
    **dict.fromkeys(("port", "viewer_port"), Range(0, 65535)),  # 0: any free port
    **dict.fromkeys(("betas", "background", "min_registered"), Range(0, 1)),
    "seed": Range(-(2**63), 2**63 - 1),  # JAX's and COLMAP's seeds are 64-bit
}
# Any finite value: signed offsets and biases, angles, coordinates (aabb and near_far are checked
# for order below), the NDC projection, and counts whose own checks say more (--mapping-threads -1
# means every core; an export's --level says where the field's opacity lies).
FREE = frozenset({"density_shift", "density_bias", "elevation_deg", "aabb", "near_far", "ndc_scale",
                  "mapping_threads", "level"})


def check(options, prefix: str = "") -> None:
    """Raise a UserError naming the first flag of the dataclass `options` (nested dataclasses
    included; `prefix`: its flags' prefix, e.g. "data") whose value is out of its range."""
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        path = f"{prefix}.{field.name}" if prefix else field.name
        if dataclasses.is_dataclass(value):
            check(value, path)
            continue
        flag = "--" + path.replace("_", "-")
        flat = [v for item in (value if isinstance(value, tuple) else (value,))
                for v in (item if isinstance(item, tuple) else (item,))]
        numbers = [v for v in flat if isinstance(v, (int, float)) and not isinstance(v, bool)]
        shown = " ".join(_shown(v) for v in numbers)
        if not all(math.isfinite(v) for v in numbers):
            raise UserError(f"{flag} must be a finite number, got {shown}")
        allowed = RANGES.get(field.name)
        if allowed is not None and not all(allowed.holds(v) for v in numbers):
            raise UserError(f"{flag} must be {allowed.describe()}, got {shown}")
        if field.name == "aabb" and value is not None and not all(lo < hi for lo, hi in zip(*value)):
            raise UserError(f"{flag} is MIN_X MIN_Y MIN_Z MAX_X MAX_Y MAX_Z: each min must be below its max, "
                            f"got {shown}")
        if field.name == "near_far" and value is not None and not 0 <= value[0] < value[1]:
            raise UserError(f"{flag} is NEAR FAR with 0 <= near < far, got {shown}")
