"""Shared fixtures: a tiny generated scene and a tiny training config (seconds on a 2-core CPU)."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
# The suite is mostly XLA compiles, and most repeat: tiny runs of the same config build the same
# programs in one test after another. XLA's persistent compilation cache compiles each once per
# session (set here, before jax is imported, by the process that starts the session; xdist's
# workers inherit it and share the folder). A folder given in JAX_COMPILATION_CACHE_DIR is used
# and kept instead, e.g. to keep compiles across sessions.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="tensorf-tests-xla-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

from tensorf.config import DataConfig, TensoRFConfig, TrainConfig  # noqa: E402
from tensorf.data.generated import GenerateConfig, generate  # noqa: E402


def pytest_configure(config):
    """The README's command (slow tests deselected) compiles at XLA's backend level 0 with XLA's
    older CPU fusion emitters. Most of its time is XLA compiling small programs that then run a
    few steps: LLVM's optimisation passes were half of each compile, and at level 0 the newer
    (MLIR) fusion emitters' own pipeline was most of the rest (a 6-step training here: 24 s at
    XLA's defaults, 18-20 s at level 0, 11-12 s at level 0 with the older emitters; the whole
    command 709 s -> 345 s). The slow line's longer trainings keep XLA's defaults, the path a
    user's CPU run takes. Set before any backend starts (nothing computes at import); xdist's workers
    and the tests' subprocesses inherit it. A level given in XLA_FLAGS is kept. Both flags are
    jaxlib 0.10's (requirements.txt): an XLA that does not know a flag stops at start-up."""
    flags = os.environ["XLA_FLAGS"]
    if config.getoption("markexpr") == "not slow" and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = flags + " --xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, except that every file using `trained_run` goes to one worker as one unit:
    a session fixture is built once per worker, and that 400-step run is the suite's costliest
    fixture (a minute on a 2-core machine), so the other worker runs the other files meanwhile."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    root = config.rootpath

    @functools.cache
    def uses_trained_run(file: str) -> bool:  # asked once per test, read once per file
        return file.endswith(".py") and "trained_run" in (root / file).read_text()

    class TrainedRunTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return "files using trained_run" if uses_trained_run(file) else file

    return TrainedRunTogether(config, log)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCENE_BOX = ((-1.0, -1.0, -0.7), (1.0, 1.0, 1.0))  # hugs the generated geometry


def make_model(config, aabb=SCENE_BOX, near_far=(2.0, 6.0), background=1.0):
    """A model over a Blender-like scene, its auto choices resolved for this backend."""
    from tensorf.data.views import Scene
    from tensorf.models.base import build_model

    return build_model(config, Scene(aabb=tuple(map(tuple, aabb)), near_far=near_far, background=background))


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Path:
    """The generated scene at 32x32: 24 train, 4 val, 4 test views."""
    return generate(GenerateConfig(out=tmp_path_factory.mktemp("scene"), size=32, n_train=24, n_val=4, n_test=4))


def short_run(data: Path) -> dict:
    """tiny_config overrides for a 300-step run on the generated scene at `data`, through two
    upsamplings and mask updates, with a final eval: the slow tests that compare two trainings
    (pose refinement, exposure maps) and their benchmarks (pose_refine.py, exposure.py)."""
    return dict(steps=300, batch_size=512, log_every=100, checkpoint_every=0, final_eval=True,
                data__path=data, data__aabb=((-1.2, -1.2, -0.7), (1.2, 1.2, 1.2)),
                model__upsample_steps=(100, 250), model__mask_update_steps=(150, 300), model__mask_threshold=3e-3,
                model__compaction="on", model__n_voxels_final=32**3, model__max_samples=64)


def tiny_config(scene: Path, run_dir: Path, **overrides) -> TrainConfig:
    model = TensoRFConfig(
        n_voxels_init=16**3,
        n_voxels_final=24**3,
        upsample_steps=(4,),
        density_components=(4, 4, 4),
        appearance_components=(8, 8, 8),
        appearance_features=12,
        mlp_hidden=32,
        max_samples=48,
        appearance_samples=8,
        mask_update_steps=(),
    )
    cfg = TrainConfig(
        run_dir=run_dir,
        steps=6,
        batch_size=256,
        log_every=1,
        eval_every=0,
        checkpoint_every=3,
        keep_checkpoints=5,
        render_chunk=1024,
        final_eval=False,
        eval_lpips=False,  # its own tests cover it (test_metrics.py); compiling VGG costs seconds
        progress=False,
        data=DataConfig(path=scene, aabb=SCENE_BOX),
        model=model,
    )
    return replace_nested(cfg, **overrides)


def assert_same_capture(a, b) -> None:
    """Two datasets read from one capture in two formats give the same training and eval cameras,
    lenses, images and rays."""
    import numpy as np

    for split in ("train", "eval"):
        ca, cb = getattr(a, split).cameras, getattr(b, split).cameras
        np.testing.assert_allclose(cb.c2w, ca.c2w, atol=1e-5)
        for k in ("fx", "fy", "cx", "cy", "distortion"):
            np.testing.assert_allclose(getattr(cb, k), getattr(ca, k), rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(getattr(b, split).images, getattr(a, split).images)
        np.testing.assert_allclose(cb.rays(0)[1], ca.rays(0)[1], atol=1e-5)


def replace_nested(cfg, **overrides):
    """dataclasses.replace that understands 'model__field' style keys."""
    nested: dict[str, dict] = {}
    flat = {}
    for k, v in overrides.items():
        if "__" in k:
            outer, inner = k.split("__", 1)
            nested.setdefault(outer, {})[inner] = v
        else:
            flat[k] = v
    for outer, fields in nested.items():
        flat[outer] = dataclasses.replace(getattr(cfg, outer), **fields)
    return dataclasses.replace(cfg, **flat)


@pytest.fixture(scope="session")
def trained_run(scene, tmp_path_factory):
    """A run trained for 400 steps on the generated scene, through two upsamplings and two mask
    updates (box shrink, compacted work, ray filtering), shared by the training and viewer tests."""
    from tensorf.training.loop import train

    run = tmp_path_factory.mktemp("trained") / "run"
    cfg = tiny_config(
        scene,
        run,
        steps=400,
        batch_size=512,
        log_every=50,
        eval_every=200,
        checkpoint_every=0,
        final_eval=True,
        data__aabb=((-1.2, -1.2, -0.7), (1.2, 1.2, 1.2)),  # room for the first mask update to shrink
        model__upsample_steps=(100, 250),
        model__mask_update_steps=(150, 300),
        model__mask_threshold=3e-3,  # this short run leaves haze above the official 1e-4 everywhere
        model__compaction="on",
        model__n_voxels_final=32**3,
        model__max_samples=64,
        compile_ahead="yes",
    )
    return cfg, train(cfg)


def pool_of_rays(origins, directions):
    """A RayPool (on the device) whose rays are exactly these, in order: one 1x1-pixel camera per
    ray, looking along it. Colours are zero."""
    import jax
    import numpy as np

    from tensorf.data.rays import RayPool

    o = np.asarray(origins, np.float64)
    d = np.asarray(directions, np.float64)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    # Camera axes: -z along the ray, x and y any orthonormal completion.
    helper = np.where(np.abs(d[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    x = np.cross(helper, -d)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(-d, x)
    c2w = np.zeros((len(o), 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3], c2w[:, 3, 3] = x, y, -d, o, 1.0
    n = len(o)
    ones, half = np.ones(n, np.float32), np.full(n, 0.5, np.float32)
    return jax.device_put(RayPool(colors=np.zeros((n, 3), np.float32), c2w=c2w.astype(np.float32), fx=ones, fy=ones,
                                  cx=half, cy=half, distortion=np.zeros((n, 6), np.float32), ids=np.arange(n, dtype=np.int32), count=np.int32(n),
                                  starts=np.arange(n + 1, dtype=np.int32), size=(1, 1)))


def pool_rays(pool):
    """The rays in play in a RayPool, in order: (origins, directions) as numpy arrays."""
    import numpy as np

    rays, _ = pool.rays(pool.ids[: int(pool.count)])
    return np.asarray(rays.origins), np.asarray(rays.directions)


def random_rays(views, seed: int, n: int):
    """n training rays of `views` drawn at random (the way training batches are)."""
    import jax

    from tensorf.data.rays import RayPool

    return jax.device_put(RayPool.from_views(views)).draw(jax.random.key(seed), n)[0]
