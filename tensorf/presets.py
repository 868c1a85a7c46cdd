"""Named starting points for train_lego.py; any option can still be overridden on the CLI."""

from __future__ import annotations

from pathlib import Path

import dataclasses

from tensorf.config import (
    L1_OBJECT,
    DataConfig,
    MipNeRF360Config,
    MipNeRFConfig,
    NeRFConfig,
    OptimConfig,
    TensoRFConfig,
    TrainConfig,
)

# Official lego recipe: VM-192 (16/48 components), 128^3 -> 300^3, batch 4096, 30k steps.
LEGO = TrainConfig()

# Aimed at 35 dB val on lego within a minute of training on an H100 (issue 24; the time-to-quality
# line of benchmarks/lego_gpu.py --preset lego-fast measures it): the official grids and batch
# over 5000 steps instead of 30k, upsampled early (every 500 steps to 2000), masked at 1000 and
# 2000, the learning rates decaying over those 5000 steps.
LEGO_FAST = dataclasses.replace(
    LEGO,
    run_dir=Path("runs/lego_fast"),
    steps=5000,
    model=dataclasses.replace(LEGO.model, upsample_steps=(500, 1000, 1500, 2000), mask_update_steps=(1000, 2000)),
)

# The project's own scene (64x64 views): small grid and few steps so a 2-core CPU finishes in
# a few minutes. The box hugs the generated geometry (GEOMETRY_BOUNDS) with a margin.
GENERATED = TrainConfig(
    run_dir=Path("runs/generated"),
    steps=1500,
    batch_size=1024,
    log_every=50,
    eval_every=500,
    checkpoint_every=500,
    data=DataConfig(path=Path("data/generated"), generate=True, aabb=((-1.0, -1.0, -0.7), (1.0, 1.0, 1.0))),
    model=TensoRFConfig(
        n_voxels_init=32**3,
        n_voxels_final=80**3,
        upsample_steps=(200, 400, 600, 800),
        mask_update_steps=(300, 600),
        appearance_components=(24, 24, 24),
        density_components=(8, 8, 8),
        max_samples=128,
        appearance_samples=16,
    ),
)

# Real lego at 200x200 (downscale 4) within a CPU wall-clock budget (benchmarks/lego_cpu.py).
# On a CPU the step is compute-bound, so the budget goes where it buys quality: the occupancy mask
# and box shrink (at 15% / 30% of the schedule, once the field has a shape) cut density and colour
# work to the live samples, so 256 samples per ray stay affordable; colour is evaluated at the top
# 16 samples. The grid grows 96^3 -> 192^3 voxels in the shrunk box (finer than the 200 px views'
# footprint). The 4000-step schedule is stretched over the budget. The same preset trains a
# capture of one's own (--data.path): images at factor 4, every held-out view evaluated
# (benchmarks/lego_cpu.py picks lego's val r_0, r_10, ..., r_90 itself).
LEGO_CPU = TrainConfig(
    run_dir=Path("runs/lego_cpu"),
    steps=4000,
    batch_size=2048,
    log_every=50,
    eval_every=1000,
    checkpoint_every=1000,
    data=DataConfig(downscale=4, eval_split="val"),
    model=TensoRFConfig(
        n_voxels_init=96**3,
        n_voxels_final=192**3,
        upsample_steps=(500, 1000, 1500, 2000),
        mask_update_steps=(600, 1200),
        max_samples=256,
        appearance_samples=16,
    ),
)

# NeRF on lego as JaxNeRF's published Blender models were trained (google-research jaxnerf:
# configs/blender.yaml and the flag defaults in nerf/utils.py): batch 4096 for 1M steps, Adam
# (0.9, 0.999), learning rate 5e-4 decaying log-linearly to 5e-6 with no warm-up (lr_delay_steps
# 0), one image per step (image_batching: false), rays through pixel corners
# (use_pixel_centers=False; JaxNeRF notes centres give about +1 dB).
NERF = TrainConfig(
    run_dir=Path("runs/nerf"),
    steps=1_000_000,
    batch_size=4096,
    batching="single_image",
    eval_every=25_000,
    checkpoint_every=25_000,
    render_chunk=4096,
    data=DataConfig(pixel_centers=False),
    model=NeRFConfig(),
    optim=OptimConfig(lr_mlp=5e-4, lr_decay_ratio=0.01, betas=(0.9, 0.999)),
)

# JaxNeRF+ as the PeRFception port trains it (POSTECH-CVLab/PeRFception configs/jaxnerf/
# blender_large.yaml, model/jaxnerf_torch/model.py): 512-wide MLPs with a view branch of half
# that (256), 192 coarse + 384 fine samples, batch 4096 from one image, 5e-4 -> 5e-6 over 200k
# steps after a 2500-step warm-up from 0.1x, rays through pixel centres.
JAXNERF_PLUS = dataclasses.replace(
    NERF,
    run_dir=Path("runs/jaxnerf_plus"),
    steps=200_000,
    render_chunk=1024,
    data=DataConfig(pixel_centers=True),
    model=NeRFConfig(net_width=512, net_width_condition=256, coarse_samples=192, fine_samples=384),
    optim=dataclasses.replace(NERF.optim, lr_delay_steps=2500, lr_delay_mult=0.1),
)

# NeRF on LLFF as JaxNeRF trains it (google-research jaxnerf configs/llff.yaml and the flag
# defaults in nerf/utils.py): images at factor 4, every 8th held out, NDC rays, 4096 rays a step
# from all images (image_batching: true), density noise 1.0 (noise_std), no warm-up, rays through
# pixel corners, and the colour branch fed the world rays' view directions (its LLFF loader keeps
# the world viewdirs when it converts the rays to NDC).
NERF_LLFF = dataclasses.replace(
    NERF,
    run_dir=Path("runs/nerf_llff"),
    batching="all_images",
    data=DataConfig(path=Path("data/nerf_llff_data/fern"), downscale=4, hold_every=8, pixel_centers=False,
                    background=0.0),  # llff.yaml: white_bkgd false
    model=NeRFConfig(density_noise=1.0, world_viewdirs=True),
)

# mip-NeRF's Blender recipe (google/mipnerf configs/blender.gin and internal/utils.py Config):
# one image per batch, 4096 rays, 1M steps, Adam (0.9, 0.999), 5e-4 decaying log-linearly to
# 5e-6 after a 2500-step warm-up from 0.01x, no gradient clipping; two levels of 128 intervals,
# coarse loss 0.1; rays through pixel centres (internal/datasets.py: x - w/2 + 0.5).
MIPNERF = dataclasses.replace(
    NERF,
    run_dir=Path("runs/mipnerf"),
    data=DataConfig(pixel_centers=True),
    model=MipNeRFConfig(),
    optim=dataclasses.replace(NERF.optim, lr_delay_steps=2500, lr_delay_mult=0.01),
)

# Official LLFF recipe (apchenstu/TensoRF configs/flower.txt): NDC rays, images at factor 4,
# 25k steps of 4096 rays, 128^3 -> 640^3 voxels upsampled at 2000/3000/4000/5500, one mask update
# at 2500 (which also shrinks the box), density 16/4/4 and appearance 48/12/12 components, MLP on
# raw features (view_pe 0, fea_pe 0), relu density, TV 1.0 on both (decaying with the learning
# rate), no L1, no ray filtering (official: NDC rays are never filtered). Every 8th image is a
# test view. It reads any forward-facing capture that takes NDC rays (LLFF's poses_bounds.npy, or
# photos posed by tensorf.poses: their downscale counts from the photos as stored, so give
# --data.downscale 1 for ones already small). Deviation: sample spacing follows our box-marching
# sampler (step_ratio 0.5 voxels along unit NDC rays) rather than the official fixed linspace
# over NDC depth.
LLFF = TrainConfig(
    run_dir=Path("runs/llff"),
    steps=25_000,
    # Official: white_bg 0 (black behind).
    data=DataConfig(path=Path("data/nerf_llff_data/fern"), downscale=4, background=0.0),
    model=TensoRFConfig(
        n_voxels_init=128**3,
        n_voxels_final=640**3,
        upsample_steps=(2000, 3000, 4000, 5500),
        mask_update_steps=(2500,),
        density_components=(16, 4, 4),
        appearance_components=(48, 12, 12),
        feature_pe=0,
        view_pe=0,
        density_activation="relu",
        l1_weight=0.0,
        l1_weight_rest=0.0,
        tv_weight_density=1.0,
        tv_weight_appearance=1.0,
        filter_rays=False,
    ),
)

# LLFF on a 2-core CPU (benchmarks/fern_cpu.py): images at factor 8 (fern: 504x378), the
# official schedule's shape compressed to 4000 steps of 2048 rays and stretched over the time
# budget (upsampling and the mask update in its first quarter, as officially), and a grid that
# ends at 200^3 voxels instead of 640^3.
LLFF_CPU = dataclasses.replace(
    LLFF,
    run_dir=Path("runs/llff_cpu"),
    steps=4000,
    batch_size=2048,
    log_every=50,
    eval_every=1000,
    checkpoint_every=1000,
    data=dataclasses.replace(LLFF.data, downscale=8),
    model=dataclasses.replace(
        LLFF.model,
        n_voxels_init=64**3,
        n_voxels_final=200**3,
        upsample_steps=(320, 480, 640, 880),
        mask_update_steps=(400,),
        max_samples=256,
        appearance_samples=16,
    ),
)

# Unbounded 360-degree captures (an object in a room, a landscape): space beyond the unit region
# (where the normalisation puts the cameras) is contracted, L-infinity, into the cube [-1.5, 1.5]^3
# that the grid fills: mip-NeRF 360's contraction with a shell half as thick, so the unit region
# gets two thirds of each axis of the grid, not half (DirectVoxGO v2 gives the shell 0.2; 0.5
# gained on the generated capture, fox and head, where 0.2 lost 2.7 dB on fox to floaters near
# its cameras: docs/unbounded.md). Samples come from mip-NeRF 360's proposal
# sampling: two small VM density fields (nerfacto's proposal sample counts, 256 and 96, and its 48
# samples for the model; grids of 128 and 256 like nerfacto's proposal hash grids) trained by the
# interlevel loss, with nerfacto's distortion loss weight 0.002 and 1000-step annealing. The lego
# recipe otherwise, with a finer last grid (the unit region is the inner part of each axis), no box
# shrink (the backdrop fills the contracted shell) and no ray filtering (every ray ends in the
# backdrop). Gradients of samples within 0.5 of a camera are scaled down ("Floaters No More",
# the model's auto distance in contracted space): the floaters they otherwise learn cost fox
# 3.5 dB, and the paper's distance, 1, also damps a subject about 1 from the cameras, as the pose
# normalisation leaves them (benchmarks/results.md: captures_cpu.py, unbounded_cpu.py). TV on
# the factor planes, 1.0 for density and appearance (the official recipe's for real forward-facing
# captures, as LLFF here): with the proposal padding it is what lets the proposals find the
# backdrop and the cells few rays reach stay smooth (docs/unbounded.md, stop 51). Padding 0.05,
# not the model's (nerfacto's) 0.01: ahead on fox and the generated capture, level on head
# (benchmarks/results.md: captures_cpu.py, unbounded_cpu.py; stop 52). Not yet measured on a GPU.
# lego's L1 kept, as all of these were measured with it (auto drops it in 360 captures).
UNBOUNDED = TrainConfig(
    run_dir=Path("runs/unbounded"),
    data=DataConfig(path=Path("data/unbounded"), contraction="linf", contraction_shell=0.5),
    model=TensoRFConfig(n_voxels_final=384**3, shrink_box=False, filter_rays=False, proposal_samples=(256, 96),
                        proposal_final_samples=48, proposal_resolution=(128, 256), tv_weight_density=1.0,
                        tv_weight_appearance=1.0, proposal_padding=0.05, l1_weight=L1_OBJECT[0],
                        l1_weight_rest=L1_OBJECT[1]),
)

# Unbounded scenes on a 2-core CPU: lego-cpu's sizes and schedule with UNBOUNDED's treatment: a
# finer last grid (256^3 against 192^3), fewer and coarser proposal samples (64 and 32, grids of
# 64 and 128, 32 samples for the model).
UNBOUNDED_CPU = dataclasses.replace(
    LEGO_CPU,
    run_dir=Path("runs/unbounded_cpu"),
    data=dataclasses.replace(UNBOUNDED.data, downscale=LEGO_CPU.data.downscale),
    model=dataclasses.replace(LEGO_CPU.model, n_voxels_final=256**3, shrink_box=False, filter_rays=False,
                              proposal_samples=(64, 32), proposal_final_samples=32, proposal_resolution=(64, 128),
                              tv_weight_density=UNBOUNDED.model.tv_weight_density,
                              tv_weight_appearance=UNBOUNDED.model.tv_weight_appearance,
                              proposal_padding=UNBOUNDED.model.proposal_padding,
                              l1_weight=UNBOUNDED.model.l1_weight, l1_weight_rest=UNBOUNDED.model.l1_weight_rest),
)

# mip-NeRF 360 on an unbounded capture (google-research/multinerf configs/360.gin and
# internal/configs.py): batch 16384 from all images, 250k steps, Adam (0.9, 0.999), 2e-3 decaying
# log-linearly to 2e-5 after a 512-step warm-up from 0.01x, gradient norm clipped at 1e-3; images
# at factor 4, L-infinity contraction here (multinerf: L2).
MIPNERF360 = TrainConfig(
    run_dir=Path("runs/mipnerf360"),
    steps=250_000,
    batch_size=16384,
    eval_every=25_000,
    checkpoint_every=25_000,
    render_chunk=4096,
    data=DataConfig(path=Path("data/unbounded"), contraction="linf", downscale=4),
    model=MipNeRF360Config(),
    optim=OptimConfig(lr_mlp=2e-3, lr_decay_ratio=0.01, betas=(0.9, 0.999), lr_delay_steps=512, lr_delay_mult=0.01,
                      grad_max_norm=1e-3),
)

PRESETS: dict[str, tuple[str, TrainConfig]] = {
    "lego": ("official TensoRF lego recipe (GPU-sized)", LEGO),
    "lego-fast": ("lego in 5000 steps, aimed at 35 dB in a minute on an H100 (GPU-sized)", LEGO_FAST),
    "generated": ("the project's generated scene, CPU-sized (minutes)", GENERATED),
    "nerf": ("NeRF as JaxNeRF trains it on lego (GPU-sized: 1M steps)", NERF),
    "jaxnerf-plus": ("JaxNeRF+, the large NeRF variant (GPU-sized)", JAXNERF_PLUS),
    "nerf-llff": ("NeRF as JaxNeRF trains it on LLFF captures (GPU-sized: 1M steps)", NERF_LLFF),
    "mipnerf": ("mip-NeRF's Blender recipe: conical frustums, integrated encoding (GPU-sized)", MIPNERF),
    "mipnerf360": ("mip-NeRF 360 on an unbounded capture: proposal MLPs, contraction (GPU-sized)", MIPNERF360),
    "lego-cpu": ("lego at 200x200 for a 2-core CPU (use with --time-budget-minutes)", LEGO_CPU),
    "llff": ("official TensoRF LLFF recipe (forward-facing, NDC; GPU-sized)", LLFF),
    "llff-cpu": ("LLFF at factor 8 for a 2-core CPU (use with --time-budget-minutes)", LLFF_CPU),
    "unbounded": ("360-degree captures with a distant background: scene contraction (GPU-sized)", UNBOUNDED),
    "unbounded-cpu": ("unbounded at lego-cpu's sizes for a 2-core CPU", UNBOUNDED_CPU),
}

# The presets sized for a GPU, each with the preset that trains its kind of scene in minutes on
# a CPU (None: none; --time-budget-minutes fits any schedule into a budget).
GPU_SIZED: dict[str, str | None] = {
    "lego": "lego-cpu", "lego-fast": "lego-cpu", "llff": "llff-cpu", "unbounded": "unbounded-cpu",
    "nerf": None, "jaxnerf-plus": None, "nerf-llff": None, "mipnerf": None, "mipnerf360": None,
}
