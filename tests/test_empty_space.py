"""Occupancy mask, compaction, box shrink, ray filtering, regularisers, CP / SH variants."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_model, pool_rays, random_rays, tiny_config
from tensorf.data.blender import load_blender
from tensorf.data.rays import RayPool, Rays, view_rays
from tensorf.fields import cp, occupancy, vm
from tensorf.metrics import psnr
from tensorf.models.base import build_schedule
from tensorf.render import compacted_map, render_rays_chunked
from tensorf.training.loop import train
from tensorf.training.trainer import filter_pool


def test_mask_marks_the_occupied_cells_up_to_dilation():
    aabb = np.array([[-1.0, -1, -1], [1, 1, 1]], np.float32)
    res = (21, 21, 21)
    center, radius = np.array([0.2, -0.1, 0.0]), 0.45

    def density(x):
        return jnp.where(jnp.linalg.norm(x - center, axis=-1) < radius, 50.0, 0.0)

    alpha = occupancy.alpha_grid(lambda _, x: density(x), None, aabb, res, step=0.1, chunk=4096)
    mask = occupancy.occupancy_from_alpha(alpha, 1e-4) > 0
    pts = occupancy.grid_points(aabb, res)
    truth = np.linalg.norm(pts - center, axis=-1) < radius
    assert truth.sum() > 50
    assert mask[truth].all()  # every occupied vertex is marked
    assert (mask & ~occupancy.dilate(truth)).sum() == 0  # and nothing beyond one cell of dilation
    assert mask.sum() < 0.5 * mask.size
    # Lookup at world points agrees with the grid at its vertices.
    unit = (pts.reshape(-1, 3) - aabb[0]) / (aabb[1] - aabb[0])
    np.testing.assert_array_equal(np.asarray(occupancy.lookup(jnp.asarray(mask, jnp.float32), jnp.asarray(unit))), mask.reshape(-1))


def test_compaction_matches_dense_evaluation_within_budget():
    pts = jax.random.uniform(jax.random.key(0), (16, 8, 3))
    live = jax.random.uniform(jax.random.key(1), (16, 8)) < 0.3

    def f(x):
        return jnp.stack([jnp.sum(x**2, -1) + 1.0, x[:, 0]], -1)

    dense = jnp.where(live[..., None], f(pts.reshape(-1, 3)).reshape(16, 8, 2), 0.0)
    out, kept = compacted_map(f, (pts,), live, budget=int(live.sum()) + 3)
    np.testing.assert_allclose(out, dense, rtol=1e-6)
    assert bool(jnp.all(kept == live))
    # Over budget: entries are taken by their rank within their row (every row's first live
    # entry, then every row's second, ...), so no row loses all of its entries before every row
    # has kept its first ones.
    rank = np.cumsum(np.asarray(live), 1) - 1
    rows = np.nonzero(np.asarray(live).any(1))[0]
    order = sorted(zip(*np.nonzero(np.asarray(live))), key=lambda ij: (rank[ij], ij[0]))
    for budget in (len(rows), 20):
        expect = np.zeros((16, 8), bool)
        for ij in order[:budget]:
            expect[ij] = True
        out, kept = compacted_map(f, (pts,), live, budget=budget)
        np.testing.assert_array_equal(kept, expect)
        np.testing.assert_allclose(out, jnp.where(expect[..., None], dense, 0.0), rtol=1e-6)
    _, kept = compacted_map(f, (pts,), live, budget=len(rows))
    assert np.all(np.asarray(kept).sum(1)[rows] == 1)  # each row exactly its first live entry
    # Gradients flow to the evaluated entries only.
    g = jax.grad(lambda p: jnp.sum(compacted_map(f, (p,), live, 20)[0][..., 0]))(pts)
    np.testing.assert_allclose(g, 2 * pts * expect[..., None], rtol=1e-6)


@pytest.fixture(scope="module")
def blob():
    """A field whose density is exactly a blob (about 1e-13 elsewhere) with random appearance."""
    from tensorf.config import TensoRFConfig

    cfg = TensoRFConfig(n_voxels_init=24**3, density_components=(1, 1, 1),
                        appearance_components=(4, 4, 4), appearance_features=8, mlp_hidden=16,
                        density_shift=-30.0, max_samples=96, appearance_samples=8, compaction="on")
    model = make_model(cfg, aabb=((-1.5,) * 3, (1.5,) * 3))
    params = model.init(jax.random.key(0))
    g = np.linspace(-1.5, 1.5, 24)
    bump = np.maximum(0.0, 1 - (g / 0.6) ** 2).astype(np.float32)
    d = params["density"]
    planes = (jnp.asarray(40.0 * np.outer(bump, bump)[..., None]), jnp.zeros_like(d.planes[1]), jnp.zeros_like(d.planes[2]))
    lines = (jnp.asarray(bump[:, None]), jnp.zeros_like(d.lines[1]), jnp.zeros_like(d.lines[2]))
    return model, {**params, "density": vm.VMFactors(planes=planes, lines=lines)}


def _render_view(model, params, views, i):
    return render_rays_chunked(model, params, view_rays(views, i), 2048)


def test_mask_render_equals_unmasked_render(scene, blob):
    model, params = blob
    schedule = build_schedule(model)
    masked, state = schedule.update_mask(params, model.initial_state())
    assert 0.01 < float(masked["occupancy"].mean()) < 0.3  # the mask skips most of the box
    test = load_blender(scene, "test")
    rays = random_rays(test, 0, 2048)
    live = float(model.live_fractions(masked, rays, None)["density"])
    assert live < 0.5 * float(model.live_fractions(params, rays, None)["density"])
    for i in range(2):
        ref, got = _render_view(model, params, test, i), _render_view(model, masked, test, i)
        assert ref.opacity.max() > 0.5  # the blob is in view
        assert np.abs(ref.rgb - got.rgb).max() < 1e-3
    # Training renders (jittered, random rays) pack live samples into the budget: same colours.
    compacted = dataclasses.replace(model, density_budget=min(1.0, live * 1.1 + 0.01))
    key = jax.random.split(jax.random.key(3), 2048)
    ref, got = model.render(params, rays, key), compacted.render(masked, rays, key)
    assert float(ref.opacity.max()) > 0.5
    np.testing.assert_allclose(got.rgb, ref.rgb, atol=1e-3)
    # Colour is computed only at top-k samples heavy enough to show, packed into its own budget.
    budgets = schedule.budgets(masked, [rays])
    off = dataclasses.replace(model, config=dataclasses.replace(model.config, compaction="off"))
    assert build_schedule(off).budgets(masked, [rays]) is None  # dense when compaction is off
    assert schedule.budgets(params, [rays]) is None  # or when there is no mask yet
    assert budgets["shade"] < 0.5 * budgets["density"] + 0.5
    both = compacted.for_state({**state, "budgets": budgets})
    out = both.render(masked, rays, key)
    np.testing.assert_allclose(out.rgb, ref.rgb, atol=1e-3)
    assert float(out.dropped.sum()) == 0
    # A quarter of the slots needed still covers each ray's heaviest sample: over budget, a batch
    # loses its faintest samples (rank-major order), not its last rays, and the colours hold.
    share = float(model.live_fractions(masked, rays, key)["shade"])
    out = dataclasses.replace(both, shade_budget=share / 4).render(masked, rays, key)
    assert float(out.dropped.sum()) > 0.5 * share * rays.origins.shape[0] * model.config.appearance_samples
    np.testing.assert_allclose(out.rgb, ref.rgb, atol=1e-2)
    # An image-ordered chunk can exceed the budget; eval therefore never compacts.
    view = view_rays(test, 0)
    np.testing.assert_allclose(compacted.render(masked, view, None).rgb, model.render(params, view, None).rgb, atol=1e-3)


def test_box_shrink_preserves_renders_and_filtering_drops_background(scene, blob):
    model, params = blob
    schedule = build_schedule(model)
    state = model.initial_state()
    shrunk, new_state = schedule.shrink(params, state)
    old_box, new_box = np.asarray(params["aabb"]), np.asarray(shrunk["aabb"])
    assert np.all(new_box[0] >= old_box[0] - 1e-6) and np.all(new_box[1] <= old_box[1] + 1e-6)
    assert np.prod(new_box[1] - new_box[0]) < 0.3 * np.prod(old_box[1] - old_box[0])
    assert all(n < o for n, o in zip(new_state["resolution"], state["resolution"]))
    test = load_blender(scene, "test")
    for i in range(len(test.names)):
        a, b = _render_view(model, params, test, i), _render_view(model, shrunk, test, i)
        assert psnr(np.clip(b.rgb, 0, 1), np.clip(a.rgb, 0, 1)) > 40

    # Filtering by the mask keeps every ray that sees the blob and drops the rest.
    pool = jax.device_put(RayPool.from_views(test))
    masked, st = schedule.update_mask(shrunk, new_state)
    st["mask_updates"] = 2
    model = dataclasses.replace(model, config=dataclasses.replace(model.config, mask_update_steps=(1, 2)))
    kept = filter_pool(build_schedule(model), masked, st, pool)
    assert 0.02 * len(pool) < len(kept) < 0.8 * len(pool)
    o, d = pool_rays(pool)
    every = render_rays_chunked(model, params, Rays(origins=o, directions=d), 4096)
    assert (every.opacity > 1e-3).sum() <= len(kept)  # nothing visible was dropped
    # The device filter keeps exactly the rays the filter keeps when run on each view's rays on
    # the host, in the same order.
    keep = jax.jit(build_schedule(model).ray_filter(st))
    host = np.concatenate([np.asarray(keep(masked, view_rays(test, i)))
                           for i in range(len(test.names))])
    np.testing.assert_array_equal(np.asarray(kept.ids[: len(kept)]), np.nonzero(host)[0])


def test_regularisers_match_hand_computation():
    rng = np.random.default_rng(0)
    planes = [rng.normal(size=s).astype(np.float32) for s in ((3, 4, 2), (3, 5, 2), (4, 5, 2))]
    lines = [rng.normal(size=s).astype(np.float32) for s in ((5, 2), (4, 2), (3, 2))]
    f = vm.VMFactors(planes=tuple(map(jnp.asarray, planes)), lines=tuple(map(jnp.asarray, lines)))
    l1 = sum(np.abs(p).mean() for p in planes) + sum(np.abs(v).mean() for v in lines)
    np.testing.assert_allclose(float(vm.l1_norm(f)), l1, rtol=1e-6)
    tv = 0.0
    for p in planes:
        a, b, c = p.shape
        h = sum((p[i + 1, j, k] - p[i, j, k]) ** 2 for i in range(a - 1) for j in range(b) for k in range(c)) / ((a - 1) * b * c)
        w = sum((p[i, j + 1, k] - p[i, j, k]) ** 2 for i in range(a) for j in range(b - 1) for k in range(c)) / (a * (b - 1) * c)
        tv += 2 * (h + w) * 1e-2
    np.testing.assert_allclose(float(vm.tv_planes(f)), tv, rtol=1e-5)
    ortho = 0.0
    for v in lines:
        c = v.shape[1]
        off = [abs(float(v[:, i] @ v[:, j])) for i in range(c) for j in range(c) if i != j]
        ortho += sum(off) / len(off)
    np.testing.assert_allclose(float(vm.orthogonality(f)), ortho, rtol=1e-5)


@pytest.mark.slow  # two trainings, about 60 s on 2 cores: on the slow CI line
@pytest.mark.parametrize("field,shading", [("cp", "mlp"), ("vm", "sh")])
def test_cp_and_sh_variants_train_the_generated_scene(scene, tmp_path, field, shading):
    cfg = tiny_config(scene, tmp_path / "run", steps=250, batch_size=512, log_every=50, checkpoint_every=0,
                      final_eval=True, model__field=field, model__shading=shading, model__upsample_steps=(100,),
                      model__n_voxels_final=28**3, model__max_samples=64, model__cp_density_components=16,
                      model__cp_appearance_components=48, model__mask_update_steps=(150,))
    if field == "cp":
        # Three-way products of N(0, s^2) lines start tiny; 0.5 gives the short run a usable start.
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_scale=0.5))
    result = train(cfg)
    assert result.eval_metrics["psnr"] > 18.0, result.eval_metrics["psnr"]
    assert isinstance(result.params["density"], cp.CPFactors if field == "cp" else vm.VMFactors)


def _soft_blob(blob):
    """The blob at a fraction of its density: many top-k samples fall below the shade threshold,
    and the random appearance gives them colours that differ from the heavy ones'."""
    model, params = blob
    d = params["density"]
    soft = vm.VMFactors(planes=(d.planes[0] * 0.72, *d.planes[1:]), lines=d.lines)
    return model, {**params, "density": soft}


def test_compaction_changes_speed_never_the_image(scene, blob):
    model, params = _soft_blob(blob)
    schedule = build_schedule(model)
    masked, state = schedule.update_mask(params, model.initial_state())
    rays = random_rays(load_blender(scene, "test"), 0, 2048)
    key = jax.random.split(jax.random.key(5), 2048)
    budgets = schedule.budgets(masked, [rays])
    compacted = model.for_state({**state, "budgets": budgets})
    dense = model.for_state({**state, "budgets": None})
    a, b = compacted.render(masked, rays, key), dense.render(masked, rays, key)
    assert float(a.dropped.sum()) == 0 and float(a.opacity.max()) > 0.3
    np.testing.assert_allclose(a.rgb, b.rgb, atol=2e-6)
    # "shade" packs only the samples to colour: density is evaluated at every sample.
    shade_only = dataclasses.replace(model, config=dataclasses.replace(model.config, compaction="shade"))
    shade_budgets = build_schedule(shade_only).budgets(masked, [rays])
    assert shade_budgets["density"] is None and shade_budgets["shade"] == budgets["shade"] < 1
    s = shade_only.for_state({**state, "budgets": shade_budgets}).render(masked, rays, key)
    assert float(s.dropped.sum()) == 0
    np.testing.assert_allclose(s.rgb, b.rgb, atol=2e-6)
    # Eval (no keys, never compacted) applies the same threshold: only the jitter differs.
    c = dense.render(masked, rays, None)
    d = compacted.render(masked, rays, None)
    np.testing.assert_allclose(c.rgb, d.rgb, atol=2e-6)
    # The test has teeth: shading every top-k sample gives another image.
    all_shaded = dataclasses.replace(dense, config=dataclasses.replace(dense.config, shade_threshold=-1.0))
    assert float(jnp.abs(all_shaded.render(masked, rays, key).rgb - b.rgb).max()) > 1e-4


def test_density_budget_overflow_drops_the_deepest_samples_of_the_busiest_rays(scene, blob):
    model, params = blob
    schedule = build_schedule(model)
    masked, state = schedule.update_mask(params, model.initial_state())
    rays = random_rays(load_blender(scene, "test"), 1, 2048)
    key = jax.random.split(jax.random.key(2), 2048)
    live = float(model.live_fractions(masked, rays, key)["density"])
    full = model.for_state({**state, "budgets": {"density": live * 1.1 + 0.01, "shade": None}}).render(masked, rays, key)
    tight = model.for_state({**state, "budgets": {"density": live * 0.85, "shade": None}}).render(masked, rays, key)
    assert float(full.dropped.sum()) == 0
    assert float(tight.dropped.sum()) > 0.1 * live * 2048 * model.num_samples(masked["density"].resolution)
    # Every ray keeps its front samples; the busiest rays lose their deepest ones, mostly hidden
    # behind the surface (dropping the last rays wholesale would blank 15% of those that see it).
    err = np.abs(np.asarray(tight.rgb - full.rgb)).max(-1)
    sees = np.asarray(full.opacity) > 0.05
    assert sees.sum() > 80
    assert np.percentile(err[sees], 95) < 1e-3 and err.max() < 0.2, np.percentile(err[sees], [50, 95, 100])


def _budget_run(scene, tmp_path, monkeypatch, **over):
    """A tiny run with a mask at step 2 and an upsampling at step 4, compaction on; records every
    budget measurement (step, at_least) and lets `first` replace the first measurement's result."""
    import tensorf.training.trainer as trainer

    calls = []
    real = trainer.measure_budgets
    first = over.pop("first", None)

    def measure(cfg, schedule, params, pool, step, at_least=None, shards=1):
        calls.append((step, at_least))
        out = real(cfg, schedule, params, pool, step, at_least, shards)
        return first if (first and len(calls) == 1) else out

    monkeypatch.setattr(trainer, "measure_budgets", measure)
    cfg = tiny_config(scene, tmp_path / "run", steps=8, log_every=2, checkpoint_every=0,
                      model__mask_update_steps=(2,), model__mask_threshold=1e-12, model__compaction="on", **over)
    return train(cfg), calls


def test_budgets_are_measured_again_after_every_resize(scene, tmp_path, monkeypatch):
    result, calls = _budget_run(scene, tmp_path, monkeypatch)
    assert [step for step, _ in calls] == [2, 4]  # the mask update, then the upsampling
    assert result.model_state["budgets"] is not None


def test_budget_overflow_warns_once_and_measures_again(scene, tmp_path, monkeypatch, capsys):
    tiny = {"density": 1 / 256, "shade": 1 / 256}
    result, calls = _budget_run(scene, tmp_path, monkeypatch, first=tiny)
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "left out" in warnings[0] and "measuring them again" in warnings[0], err
    # Measured again at the next log (step 4), no smaller than the budgets that overflowed.
    assert calls[1] == (4, tiny)
    budgets = result.model_state["budgets"]
    assert budgets["density"] > tiny["density"] and budgets["shade"] > tiny["shade"]
    events = b"".join(p.read_bytes() for p in (tmp_path / "run" / "tb").iterdir())
    assert b"train/dropped" in events
