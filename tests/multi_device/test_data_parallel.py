"""Data-parallel training on several devices. These run in a subprocess with forced CPU devices
(tests/test_parallel.py); in the main run, with one device, they skip."""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_model, tiny_config
from tensorf.config import CameraOptConfig, ExposureConfig, TensoRFConfig
from tensorf.data.blender import load_blender
from tensorf.data.rays import RayPool
from tensorf.models.base import build_schedule
from tensorf.parallel import make_mesh, replicate
from tensorf.run import restore_run
from tensorf.training.loop import train
from tensorf.training.optimizer import lrs_at, make_optimizer
from tensorf.training.cameras import initial_cameras
from tensorf.training.exposure import initial_exposure
from tensorf.training.step import draw_batch, initial_totals, make_train_step

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (tests/test_parallel.py forces them)")


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("masked, refine", [(False, False), (True, False), (False, True)])
def test_one_step_on_four_devices_equals_one_step_on_one(scene, masked, refine):
    cfg = TensoRFConfig(n_voxels_init=20**3, density_components=(4, 4, 4), appearance_components=(6, 6, 6),
                        appearance_features=8, mlp_hidden=16, init_scale=0.5, density_shift=-2.0, max_samples=48,
                        appearance_samples=6, compaction="on", mask_threshold=0.5)
    model = make_model(cfg)
    params = model.init(jax.random.key(0))
    state = model.initial_state()
    if masked:
        params, state = build_schedule(model).update_mask(params, state)
        assert 0.05 < float(params["occupancy"].mean()) < 0.95
        state = {**state, "budgets": {"density": 0.95, "shade": 0.95}}
    model = model.for_state(state)
    tx = make_optimizer(model, tiny_config(scene, None).optim)
    pool = RayPool.from_views(load_blender(scene, "train"))
    lrs = functools.partial(lrs_at, tiny_config(scene, None))
    weights = model.loss_weights(jnp.float32(0), jnp.float32(1))
    key = jax.random.key(3)
    # With pose refinement each device casts its shard's rays from the corrected cameras, and
    # with exposures maps each ray's colour by its own view's map.
    camera_opt = CameraOptConfig(mode="SO3xR3") if refine else None
    exposure = ExposureConfig(mode="affine") if refine else None
    cams = {**initial_cameras(len(pool.c2w)), **initial_exposure(len(pool.c2w))} if refine else None
    outs = []
    for n in (1, 4):
        mesh = make_mesh(n, 256)
        p, o, t, c, pl, k, s = replicate(mesh, (params, tx.init(params), initial_totals(), cams, pool, key, np.int32(0)))
        outs.append(make_train_step(model, tx, lrs, 256, mesh, camera_opt=camera_opt, exposure_cfg=exposure)(
            p, o, t, None, c, pl, s, None, k))
    (p1, o1, t1, _, c1, _, s1), (p4, o4, t4, _, c4, _, s4) = outs
    if refine:  # Adam's moments after one step are the corrections' gradient, as for the params
        assert np.abs(np.asarray(c1["opt"].mu)).max() > 0 and np.abs(np.asarray(c1["exposure_opt"].mu)).max() > 0
        # Each view's gradient sums thousands of rays' terms that largely cancel: compared against
        # the largest, as summation order moves the small ones.
        moments = lambda c: _leaves((c["opt"], c["exposure_opt"]))  # noqa: E731
        for a, b in zip(moments(c4), moments(c1), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    _, rays, colors, keys = draw_batch(jax.device_put(pool), key, 0, 256)
    assert float(t1["dropped"]) == float(t4["dropped"]) == 0.0
    np.testing.assert_allclose(float(s4["loss"]), float(s1["loss"]), rtol=1e-5)
    # Adam's moments after one step are the gradient (mu = 0.1 g, nu = 0.01 g^2): the averaged
    # shard gradients equal the whole batch's.
    for a, b in zip(_leaves(o4), _leaves(o1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)
    # Adam's first update is lr * g / (|g| + 1e-8): where a gradient is ~0, summation order alone
    # decides its sign, so the parameters are compared where the gradient is clear of zero.
    def loss(p):
        out = model.render(p, rays, keys)
        return jnp.mean((out.rgb - colors) ** 2) + model.regularizer(p, weights)

    grads = jax.jit(jax.grad(loss))(params)
    for a, b, g in zip(_leaves(p4), _leaves(p1), _leaves(grads), strict=True):
        clear = np.abs(g) > 1e-5
        np.testing.assert_allclose(a[clear], b[clear], rtol=1e-5, atol=1e-5)
    moved = [not np.array_equal(a, b) for a, b in zip(_leaves(p1), _leaves(params))]
    assert sum(moved) >= 5  # the step did update the params


def test_two_devices_train_like_one_and_resume_on_one(scene, tmp_path):
    over = dict(steps=80, batch_size=512, log_every=40, checkpoint_every=40, final_eval=True,
                model__upsample_steps=(20,), model__mask_update_steps=(40,), model__compaction="on",
                model__mask_threshold=3e-3, model__n_voxels_final=24**3)
    one = train(tiny_config(scene, tmp_path / "one", num_devices=1, **over))
    two = train(tiny_config(scene, tmp_path / "two", num_devices=2, **over))
    assert two.model_state["mask_updates"] == 1 and two.model_state["level"] == 1
    assert abs(two.eval_metrics["psnr"] - one.eval_metrics["psnr"]) < 1.0, (one.eval_metrics, two.eval_metrics)
    # A checkpoint written on 2 devices resumes on 1 and continues the same trajectory.
    shutil.rmtree(tmp_path / "two" / "checkpoints" / "80")
    resumed = train(tiny_config(scene, tmp_path / "two", num_devices=1, **{**over, "final_eval": False}), resume=True)
    assert resumed.steps == 80
    # The mask update at step 40 runs again after the resume; its budgets are shares of what one
    # device renders, measured on 1-device batches now, so only they may differ.
    strip = lambda state: {k: v for k, v in state.items() if k != "budgets"}  # noqa: E731
    assert strip(resumed.model_state) == strip(two.model_state)
    # Same trajectory, to rounding: one device sums the batch in another order than two, and
    # Adam's normalised steps turn that rounding into whole steps where a voxel's gradient is
    # near zero. Elementwise (rtol 1e-4) this held on one CPU and not on another (appearance
    # grids 0.1-0.3% apart in norm, single voxels 0.013); a lost optimizer state or step count
    # moves every leaf by far more.
    for a, b in zip(_leaves(resumed.params), _leaves(two.params), strict=True):
        apart, size = np.linalg.norm(a - b), np.linalg.norm(b)
        assert apart <= 1e-2 * size + 1e-6, (a.shape, apart, size)
    assert restore_run(tmp_path / "two")[3]["step"] == 80


def test_batch_that_does_not_split_is_one_clear_error(scene, tmp_path):
    from tensorf.errors import UserError

    with pytest.raises(UserError, match=r"--batch-size 250 does not split over 4 devices"):
        train(tiny_config(scene, tmp_path / "r", num_devices=4, batch_size=250))


def test_whole_image_renders_spread_over_devices_match_one_device(scene):
    from tensorf.data.rays import view_rays
    from tensorf.render import render_rays_chunked

    model = make_model(TensoRFConfig(n_voxels_init=16**3, density_components=(2, 2, 2), appearance_components=(3, 3, 3),
                                     appearance_features=4, mlp_hidden=8, init_scale=0.5, density_shift=-2.0,
                                     max_samples=32, appearance_samples=4))
    params = model.init(jax.random.key(0))
    rays = view_rays(load_blender(scene, "test"), 0)  # 1024 rays: chunks of 100 leave a padded last one
    one = render_rays_chunked(model, params, rays, 100)
    four = render_rays_chunked(model, params, rays, 100, make_mesh(4, 4))
    assert float(one.opacity.max()) > 0.1
    for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mesh_export_queries_spread_over_devices_match_one_device():
    from tensorf.export_mesh import extract_mesh

    model = make_model(TensoRFConfig(n_voxels_init=16**3, density_components=(2, 2, 2), appearance_components=(3, 3, 3),
                                     appearance_features=4, mlp_hidden=8, init_scale=0.5, density_shift=-1.0))
    params = model.init(jax.random.key(1))
    aabb = np.asarray(params["aabb"])
    one = extract_mesh(model, params, aabb, 20, 0.3, 999)
    four = extract_mesh(model, params, aabb, 20, 0.3, 999, make_mesh(4, 4))
    assert len(one[0]) > 100
    np.testing.assert_allclose(four[0], one[0], rtol=1e-5, atol=1e-5)  # vertices
    np.testing.assert_array_equal(four[1], one[1])  # faces
    assert np.abs(four[2].astype(int) - one[2].astype(int)).max() <= 1  # uint8 colours, rounding


def test_steps_queued_over_cpu_devices_are_bounded(scene, tmp_path, monkeypatch):
    """Over several CPU devices XLA can abort a step's all-reduce when many steps are queued
    (benchmarks/cpu_queue.py), so the loop never has more than CPU_QUEUE steps in flight there,
    however far apart its logs are (this run queues 16 by step 60 without the bound)."""
    from tensorf.training import trainer

    in_flight, outputs = [], []
    real_step = trainer.Trainer.train_step

    def counting_step(self, sched):
        in_flight.append(sum(not x.is_ready() for x in outputs))
        stats = real_step(self, sched)
        outputs.append(stats["loss"])
        return stats

    monkeypatch.setattr(trainer.Trainer, "train_step", counting_step)
    train(tiny_config(scene, tmp_path / "r", num_devices=4, steps=60, log_every=60, checkpoint_every=0, batch_size=1024,
                      compile_ahead="yes"))
    assert max(in_flight) <= trainer.CPU_QUEUE, in_flight
