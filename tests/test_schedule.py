"""TensoRF's host-side schedule (upsampling, masks, shrink, budgets, ray filtering) and the
training schedule around it (learning rates, L1 switch, time-budget stretching)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_model, pool_of_rays, pool_rays, tiny_config
from tensorf.config import OptimConfig, TensoRFConfig, TrainConfig
from tensorf.data.rays import Rays
from tensorf.fields import vm
from tensorf.models.base import build_schedule
from tensorf.run import restore_run
from tensorf.training.loop import schedule_step, train
from tensorf.training.trainer import filter_pool
from tensorf.training.optimizer import lrs_at

BOX = ((-1.5,) * 3, (1.5,) * 3)


def _bump(g, centre, width):
    return np.maximum(0.0, 1 - ((g - centre) / width) ** 2).astype(np.float32)


def _blobs(model, params, centres_x, res=24):
    """Density factors holding one blob per x centre (radius ~0.5, on the y = z = 0 axis)."""
    g = np.linspace(-1.5, 1.5, res)
    plane = sum(np.outer(_bump(g, cx, 0.5), _bump(g, 0.0, 0.5)) for cx in centres_x)
    d = params["density"]
    planes = (jnp.asarray(40.0 * plane[..., None]), jnp.zeros_like(d.planes[1]), jnp.zeros_like(d.planes[2]))
    lines = (jnp.asarray(_bump(g, 0.0, 0.5)[:, None]), jnp.zeros_like(d.lines[1]), jnp.zeros_like(d.lines[2]))
    return {**params, "density": vm.VMFactors(planes=planes, lines=lines)}


def _model(**over):
    base = dict(n_voxels_init=24**3, density_components=(1, 1, 1), appearance_components=(4, 4, 4),
                appearance_features=8, mlp_hidden=16, density_shift=-30.0, max_samples=96, appearance_samples=8,
                compaction="on")
    cfg = TensoRFConfig(**{**base, **over})
    model = make_model(cfg, aabb=BOX)
    return model, build_schedule(model), model.init(jax.random.key(0))


def _mask_at(params, point):
    aabb = np.asarray(params["aabb"])
    occ = np.asarray(params["occupancy"])
    idx = np.round((np.asarray(point) - aabb[0]) / (aabb[1] - aabb[0]) * (np.array(occ.shape) - 1)).astype(int)
    return occ[tuple(idx)]


def test_later_mask_updates_keep_what_earlier_ones_removed():
    # Blob A only at the first update; then the field also grows blob B (a floater) where the mask
    # already says empty. The second update must not bring B back (official compute_alpha).
    model, schedule, params = _model(mask_update_steps=(1, 2), shrink_box=False)
    state = model.initial_state()
    params, state, events = schedule.advance(_blobs(model, params, [-0.7]), state, 1)
    assert events == {"mask"} and _mask_at(params, (-0.7, 0, 0)) == 1 and _mask_at(params, (0.7, 0, 0)) == 0
    both = _blobs(model, params, [-0.7, 0.7])
    params, state, events = schedule.advance(both, state, 2)
    assert events == {"mask"} and state["mask_updates"] == 2
    assert _mask_at(params, (-0.7, 0, 0)) == 1
    assert _mask_at(params, (0.7, 0, 0)) == 0


def test_advance_masks_before_upsampling_and_shrinks_once():
    model, schedule, params = _model(mask_update_steps=(5, 8, 9), upsample_steps=(5, 9), n_voxels_final=40**3)
    params = _blobs(model, params, [0.0])
    state = model.initial_state()
    params, state, events = schedule.advance(params, state, 5)
    assert events == {"mask", "resize"} and state["mask_updates"] == 1 and state["level"] == 1
    # The mask was built on the (shrunk) grid before the upsampling: its shape is the crop's.
    box = np.asarray(params["aabb"])
    assert np.all(box[1] - box[0] < 2.0)  # shrunk to the blob
    assert state["mask"] != state["resolution"]
    assert all(m < r for m, r in zip(state["mask"], state["resolution"]))
    upsampled = vm.voxels_to_resolution(schedule.voxels_at_level(1), box)
    assert tuple(state["resolution"]) == upsampled
    # Later updates rebuild the mask at the current grid but never shrink the box again.
    params, state, events = schedule.advance(params, state, 8)
    assert events == {"mask"} and state["mask"] == state["resolution"]
    np.testing.assert_array_equal(np.asarray(params["aabb"]), box)
    params, state, events = schedule.advance(params, state, 9)
    assert events == {"mask", "resize"} and state["mask_updates"] == 3 and state["level"] == 2
    np.testing.assert_array_equal(np.asarray(params["aabb"]), box)
    assert schedule.advance(params, state, 100)[2] == set()  # nothing left to do


def _shapes(tree):
    return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("shrink", [True, False])
def test_ahead_predicts_the_shapes_each_event_leaves(shrink):
    # The loop compiles the step for Schedule.ahead's shapes before the event; a wrong guess
    # would only cost a compile, so check every guess is exact. No guess where the crop of the
    # first mask update is not known yet.
    model, schedule, params = _model(mask_update_steps=(5, 8, 9), upsample_steps=(3, 5, 9, 12),
                                     n_voxels_final=40**3, shrink_box=shrink)
    params, state = _blobs(model, params, [0.0]), model.initial_state()
    rays = jax.eval_shape(lambda: Rays(jnp.zeros((64, 3)), jnp.ones((64, 3))))
    for step in (3, 5, 8, 9, 12):
        guess = schedule.ahead(params, state, rays)
        params, state, events = schedule.advance(params, state, step)
        assert events and guess.events == events, step
        if step == 5 and shrink:
            assert guess.params is None and guess.state is None
        else:
            assert _shapes(guess.params) == _shapes(params), step
            assert guess.state == {**state, "budgets": None}, step
    assert schedule.ahead(params, state, rays) is None  # no event left


@pytest.mark.slow  # a rare path, about 18 s on 2 cores: kept off the README command's budget
def test_a_failed_compile_ahead_falls_back_to_compiling_at_the_event(scene, tmp_path, monkeypatch, capsys):
    import threading

    from tensorf.training import trainer

    class FailsAhead:
        """A step whose compile fails on the compile-ahead thread only (say, out of memory)."""

        def __init__(self, step):
            self.step = step

        def lower(self, *args):
            if threading.current_thread().name.startswith("compile-ahead"):
                raise RuntimeError("out of compiler memory")
            return self.step.lower(*args)

    real = trainer.make_train_step
    monkeypatch.setattr(trainer, "make_train_step", lambda *a, **k: FailsAhead(real(*a, **k)))
    result = train(tiny_config(scene, tmp_path / "run", steps=6, checkpoint_every=0, compile_ahead="yes",
                               model__upsample_steps=(4, 5)))
    assert result.steps == 6
    assert [(step, ahead) for step, _, ahead in result.compiles] == [(0, False), (4, False), (5, False)]
    assert "compiling the step ahead failed (RuntimeError: out of compiler memory)" in capsys.readouterr().err



@pytest.mark.slow  # two short runs with compiles ahead, about 30 s on 2 cores (a GPU's path)
def test_events_compiled_ahead_wait_for_no_compile_and_end_on_measured_budgets(scene, tmp_path, monkeypatch):
    # An event takes the step compiled ahead with wide budgets when the measured ones fit, then
    # the step with the measured ones comes in beside training. The swap waits
    # for nothing on a GPU, so its step depends on the compiler; here tighten() waits, to swap at
    # the first log step after each event. Training is the same as with every step compiled
    # at its event (which is what a CPU does), to float rounding.
    from tensorf.training import trainer

    real = trainer.Trainer.tighten

    def waiting(self):
        if self.tighter is not None:
            self.tighter[0].result()
        real(self)

    monkeypatch.setattr(trainer.Trainer, "tighten", waiting)
    cfg = tiny_config(scene, tmp_path / "ahead", steps=90, checkpoint_every=0, log_every=5, compile_ahead="yes",
                      data__aabb=((-1.2, -1.2, -0.7), (1.2, 1.2, 1.2)), model__mask_update_steps=(50, 70),
                      model__upsample_steps=(60, 80), model__mask_threshold=3e-3, model__compaction="on")
    ahead = train(cfg)
    # At 50 the box shrink: its crop follows the field, so its step is compiled at the event.
    assert [(step, hit) for step, _, hit in ahead.compiles] == [(0, False), (50, False), (60, True), (70, False), (80, True)]
    # At 70 the young field's mask doubled its occupied share, beyond the headroom: compiled there.
    assert ahead.tightened == [(60, 65), (80, 85)], ahead.tightened  # at the next log steps
    # Nothing else was compiled at the events after the shrink: their own programs were compiled
    # ahead too.
    assert [(step, names) for step, _, names in ahead.event_compiles][1:] == [(60, []), (70, ["jit(step)"]), (80, [])]
    at_events = train(dataclasses.replace(cfg, run_dir=tmp_path / "at_events", compile_ahead="no"))
    assert at_events.tightened == [] and not any(hit for _, _, hit in at_events.compiles)
    assert ahead.model_state["budgets"] == at_events.model_state["budgets"] is not None
    for x, y in zip(jax.tree.leaves(ahead.params), jax.tree.leaves(at_events.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)

def test_empty_field_skips_the_first_mask_update_and_the_next_one_shrinks():
    model, schedule, params = _model(mask_update_steps=(2, 4))
    state = model.initial_state()
    params, state, events = schedule.advance(params, state, 2)  # the fresh field is empty
    assert events == {"empty"} and state["mask_updates"] == 1 and params["occupancy"].shape == (1, 1, 1)
    params, state, events = schedule.advance(_blobs(model, params, [0.0]), state, 4)
    assert events == {"mask", "resize"} and state["mask_updates"] == 2
    assert np.all(np.diff(np.asarray(params["aabb"]), axis=0) < 2.0)


def test_skipped_first_mask_update_is_remembered_by_the_loop_and_said(scene, tmp_path, monkeypatch, capsys):
    # A threshold no opacity reaches: the field counts as empty at the mask step. The loop must
    # adopt the counted update, or it evaluates the full alpha grid again at every later step.
    # And it must say so: a field that never forms otherwise trains on quietly to a render of the
    # background alone (head with TV 1.0 did for 36 minutes, docs/captures.md).
    from tensorf.models.tensorf.schedule import TensoRFSchedule

    calls = []
    real = TensoRFSchedule.alpha_grid
    monkeypatch.setattr(TensoRFSchedule, "alpha_grid", lambda self, *a: calls.append(1) or real(self, *a))
    train(tiny_config(scene, tmp_path / "run", steps=6, model__mask_update_steps=(2,), model__mask_threshold=2.0))
    assert len(calls) == 1
    assert restore_run(tmp_path / "run")[3]["model_state"]["mask_updates"] == 1
    warnings = [line for line in capsys.readouterr().out.splitlines() if "the field is still empty" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: step 2:") and "it was the last" in warnings[0], warnings


def test_voxel_and_sample_counts():
    model, schedule, _ = _model(n_voxels_init=100**3, n_voxels_final=300**3, upsample_steps=(1, 2, 3, 4))
    counts = [schedule.voxels_at_level(i) for i in range(5)]
    assert counts[0] == 100**3 and counts[-1] == 300**3
    np.testing.assert_allclose(np.diff(np.log(counts)), np.log(27) / 4, rtol=1e-6)  # log-spaced
    # Official nSamples: the grid diagonal in voxels over step_ratio, capped by max_samples.
    uncapped = dataclasses.replace(model, config=dataclasses.replace(model.config, max_samples=10**6))
    assert uncapped.num_samples((128, 128, 128)) == int(np.ceil(np.sqrt(3) * 127 / 0.5)) == 440
    assert model.num_samples((128, 128, 128)) == 96


def test_sample_step_is_the_voxel_step_unless_max_samples_caps_it():
    model, _, params = _model()
    res = np.array(params["density"].resolution)
    voxel = np.mean(3.0 / (res - 1))
    uncapped = dataclasses.replace(model, config=dataclasses.replace(model.config, max_samples=10**6))
    np.testing.assert_allclose(float(uncapped.sample_step(params)), voxel * 0.5, rtol=1e-6)
    capped = dataclasses.replace(model, config=dataclasses.replace(model.config, max_samples=16))
    np.testing.assert_allclose(float(capped.sample_step(params)), np.sqrt(3) * 3.0 / 16, rtol=1e-6)


def test_learning_rates_decay_and_restart_at_upsampling():
    cfg = TrainConfig(steps=1000, optim=OptimConfig(lr_grid=0.02, lr_mlp=1e-3, lr_decay_ratio=0.1),
                      model=TensoRFConfig(upsample_steps=(200, 500)))
    np.testing.assert_allclose(lrs_at(cfg, 0)["grid"], 0.02, rtol=1e-6)
    np.testing.assert_allclose(lrs_at(cfg, 199)["grid"], 0.02 * 0.1 ** (199 / 1000), rtol=1e-6)
    np.testing.assert_allclose(lrs_at(cfg, 200)["grid"], 0.02)  # restarted with the optimize, rtol=1e-6)
    np.testing.assert_allclose(lrs_at(cfg, 700)["mlp"], 1e-3 * 0.1 ** (200 / 1000), rtol=1e-6)
    assert lrs_at(cfg, 10)["frozen"] == 0.0
    flat = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr_upsample_reset=False))
    np.testing.assert_allclose(lrs_at(flat, 700)["grid"], 0.02 * 0.1 ** 0.7, rtol=1e-6)


def test_l1_weight_switches_at_the_first_mask_update():
    model, _, _ = _model(mask_update_steps=(300, 600), l1_weight=8e-5, l1_weight_rest=4e-5)
    assert model.loss_weights(299, 1.0)["l1"] == np.float32(8e-5) and model.loss_weights(300, 1.0)["l1"] == np.float32(4e-5)
    assert model.loss_weights(10**6, 1.0)["l1"] == np.float32(4e-5)


def test_time_budget_stretches_the_schedule():
    cfg = TrainConfig(steps=4000, time_budget_minutes=10.0)
    assert schedule_step(cfg, 7, 0.0) == 0.0
    assert schedule_step(cfg, 7, 150.0) == 1000.0  # a quarter of the budget: a quarter of the schedule
    assert schedule_step(cfg, 7, 10_000.0) == 4000.0  # never past the end
    assert schedule_step(dataclasses.replace(cfg, time_budget_minutes=None), 7, 150.0) == 7.0


def _rays_through(points, origin=(0.0, 0.0, 4.0)):
    o = np.broadcast_to(np.asarray(origin, np.float32), (len(points), 3)).copy()
    d = np.asarray(points, np.float32) - o
    return o, (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("proposals", [False, True])
def test_ray_filter_keeps_exactly_the_rays_that_hit(proposals):
    over = dict(proposal_samples=(16, 8), proposal_resolution=(8, 16), proposal_final_samples=8) if proposals else {}
    model, schedule, params = _model(mask_update_steps=(1, 2), **over)
    if proposals:
        # The filter marches the box: it never evaluates the proposal fields (here left out).
        params = {k: v for k, v in params.items() if k != "proposal"}
    rng = np.random.default_rng(0)
    # Targets on the z = 0 plane well inside the box (|x|, |y| <= 1.2; a few near the centre) or
    # well outside it (|x|, |y| >= 2.5), shuffled.
    inside = np.concatenate([rng.uniform(-1.2, 1.2, (40, 2)), rng.uniform(-0.2, 0.2, (6, 2))])
    outside = rng.uniform(2.5, 4.0, (40, 2)) * rng.choice([-1, 1], (40, 2))
    targets = np.concatenate([inside, outside])
    order = rng.permutation(len(targets))
    o, d = _rays_through(np.concatenate([targets[order], np.zeros((len(targets), 1))], -1))
    pool = pool_of_rays(o, d)
    hit_box = order < len(inside)
    kept = filter_pool(schedule, params, model.initial_state(), pool)
    assert kept.ids.shape == pool.ids.shape  # filtering keeps the shapes: no retrace
    np.testing.assert_allclose(pool_rays(kept)[1], d[hit_box], atol=1e-6)  # the same rays, in order
    # From the second mask update on, only rays crossing an occupied cell: here one block.
    occ = np.zeros((24, 24, 24), np.float32)
    occ[8:16, 8:16, 8:16] = 1.0  # about [-0.46, 0.46]^3
    masked = {**params, "occupancy": jnp.asarray(occ)}
    state = {**model.initial_state(), "mask": [24] * 3, "mask_updates": 2}
    close = np.max(np.abs(targets[order]), axis=-1) < 0.25
    far = np.max(np.abs(targets[order]), axis=-1) > 0.7
    keep_ids = np.nonzero(close | far)[0]  # leave out the rays that only graze the block's edge
    kept = filter_pool(schedule, masked, state, pool_of_rays(o[keep_ids], d[keep_ids]))
    assert close.sum() >= 2 and far.sum() >= 10
    np.testing.assert_allclose(pool_rays(kept)[1], d[keep_ids][close[keep_ids]], atol=1e-6)


def test_ray_filter_that_keeps_nothing_says_so(scene):
    model, schedule, params = _model(mask_update_steps=(1, 2))
    state = {**model.initial_state(), "mask": [24] * 3, "mask_updates": 2}
    empty = {**params, "occupancy": jnp.zeros((24, 24, 24), jnp.float32)}
    o, d = _rays_through([[0.0, 0.0, 0.0], [0.3, 0.1, 0.0]])
    with pytest.raises(Exception, match=r"none of the 2 training rays crosses the scene box.*--data.aabb"):
        filter_pool(schedule, empty, state, pool_of_rays(o, d))
