"""Mixed precision: float16 with dynamic loss scaling, bfloat16 without; master params float32."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_model, tiny_config
from tensorf.data.blender import load_blender
from tensorf.data.rays import RayPool
from tensorf.training.loop import train
from tensorf.training.optimizer import lrs_at, make_optimizer
from tensorf.training.step import initial_loss_scale, initial_totals, make_train_step


def test_float16_overflow_skips_the_update_and_halves_the_scale(scene, trained_run):
    # The trained field: only its matrix products run in float16, and a fresh field shades no
    # sample, so nothing float16 would carry a gradient to overflow.
    cfg, result = trained_run
    model = make_model(dataclasses.replace(cfg.model, compute_dtype="float16")).for_state(result.model_state)
    params = jax.tree.map(jnp.array, result.params)
    tx = make_optimizer(model, cfg.optim)
    opt = tx.init(params)
    step = make_train_step(model, tx, functools.partial(lrs_at, cfg), 256)
    pool = jax.device_put(RayPool.from_views(load_blender(scene, "train")))
    zero, key = jnp.int32(0), jax.random.key(1)
    # A scale so large that the scaled float16 gradients overflow: the update is skipped.
    huge = {"scale": jnp.float32(1e30), "fin_steps": jnp.int32(7)}
    p, o, totals, scale, _, _, stats = step(params, opt, initial_totals(), huge, None, pool, zero, None, key)
    assert np.isfinite(float(stats["loss"]))
    assert int(totals["skipped"]) == 1 and float(scale["scale"]) == float(np.float32(1e30)) / 2 and int(scale["fin_steps"]) == 0
    for a, b in zip(jax.tree.leaves((p, o)), jax.tree.leaves((params, opt)), strict=True):
        np.testing.assert_array_equal(a, b)
    # At the initial scale the same step goes through, in float32 master params.
    p, o, totals, scale, _, _, _ = step(params, opt, totals, initial_loss_scale(), None, pool, zero, None, key)
    assert int(totals["skipped"]) == 1 and int(scale["fin_steps"]) == 1
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(params)))


@pytest.mark.slow  # three trainings, 63 s on 2 cores: on its own CI line
def test_half_precision_trains_like_float32(scene, tmp_path):
    psnr = {}
    for dtype in ("float32", "bfloat16", "float16"):
        cfg = tiny_config(scene, tmp_path / dtype, steps=150, batch_size=512, log_every=50, checkpoint_every=0,
                          final_eval=True, model__upsample_steps=(50,), model__compute_dtype=dtype)
        psnr[dtype] = train(cfg).eval_metrics["psnr"]
    assert psnr["float32"] > 16.0, psnr  # trained well past the first guesses (~10 dB): a comparison that means something
    for dtype in ("bfloat16", "float16"):
        assert psnr["float32"] - psnr[dtype] < 0.5, psnr
    events = b"".join(p.read_bytes() for p in (tmp_path / "float16" / "tb").iterdir())
    assert b"train/loss_scale" in events and b"train/skipped_steps" in events


@pytest.mark.slow  # two trainings, about 50 s on 2 cores: on the slow CI line
def test_float16_resume_continues_the_loss_scale(scene, tmp_path):
    import shutil

    from tensorf.checkpoint import Checkpointer

    cfg = tiny_config(scene, tmp_path / "run", steps=6, model__compute_dtype="float16")
    straight = train(cfg)
    ckpt = Checkpointer(tmp_path / "run", read_only=True)
    saved, _ = ckpt.restore(3, lambda m: {"loss_scale": initial_loss_scale()})
    ckpt.close()
    assert int(saved["loss_scale"]["fin_steps"]) == 3  # three clean steps counted, carried by the checkpoint
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "6")
    resumed = train(cfg, resume=True)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params), strict=True):
        np.testing.assert_array_equal(a, b)
    ckpt = Checkpointer(tmp_path / "run", read_only=True)
    final, _ = ckpt.restore(6, lambda m: {"loss_scale": initial_loss_scale()})
    ckpt.close()
    assert int(final["loss_scale"]["fin_steps"]) == 6  # the resumed run continued the count from 3


def _equations(jaxpr):
    """Every equation of a jaxpr and of the jaxprs inside it (jit, shard_map, cond, scan, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


@pytest.mark.parametrize("family, lookup", [("tensorf", "volume"), ("tensorf", "factors"), ("nerf", None)])
def test_half_precision_runs_only_the_matrix_products_in_bfloat16(scene, family, lookup):
    """The bfloat16 training step, traced: every scatter-add (the gradient of a gather) and every
    gather from a grid is float32, no grid is converted to another dtype, and matrix products do
    run in bfloat16. (bfloat16 grids made the H100 step 14x slower: docs/gpu.md.)"""
    from tensorf.config import NeRFConfig

    if family == "tensorf":
        cfg = tiny_config(scene, None, model__compute_dtype="bfloat16", model__density_lookup=lookup,
                          model__compaction="on")
        model = make_model(cfg.model)
        model = model.for_state({**model.initial_state(), "budgets": {"density": 0.5, "shade": 0.5}})
    else:
        cfg = tiny_config(scene, None)
        model = make_model(NeRFConfig(net_depth=2, net_width=32, net_width_condition=16, coarse_samples=8,
                                      fine_samples=8, compute_dtype="bfloat16"))
    params = model.init(jax.random.key(0), model.initial_state())
    tx = make_optimizer(model, cfg.optim)
    step = make_train_step(model, tx, functools.partial(lrs_at, cfg), 200)  # 200: no grid has a batch's shape
    pool = jax.device_put(RayPool.from_views(load_blender(scene, "train")))
    jaxpr = jax.make_jaxpr(step)(params, tx.init(params), initial_totals(), None, None, pool, jnp.int32(0), None,
                                 jax.random.key(1))
    grids = set()
    for key in ("density", "appearance"):
        for leaf in jax.tree.leaves(params.get(key, ())):
            grids |= {leaf.shape, (leaf.shape[0] * leaf.shape[1], *leaf.shape[2:])}  # planes are gathered flat
    if "density" in params:
        grids.add(tuple(params["density"].resolution))  # the summed volume
    counts = {"grid gathers": 0, "scatter-adds": 0, "bfloat16 products": 0}
    for eqn in _equations(jaxpr.jaxpr):
        name, ins = eqn.primitive.name, [v.aval for v in eqn.invars if hasattr(v, "aval")]
        if name == "scatter-add":
            counts["scatter-adds"] += 1
            assert ins[0].dtype == jnp.float32, f"a {ins[0].dtype} scatter-add into {ins[0].shape}"
        elif name == "gather" and tuple(ins[0].shape) in grids:
            counts["grid gathers"] += 1
            assert ins[0].dtype == jnp.float32, f"a {ins[0].dtype} gather from the grid {ins[0].shape}"
        elif name == "convert_element_type" and tuple(ins[0].shape) in grids and ins[0].dtype == jnp.float32:
            assert eqn.params["new_dtype"] == jnp.float32, f"the grid {ins[0].shape} converted to {eqn.params['new_dtype']}"
        elif name == "dot_general" and any(a.dtype == jnp.bfloat16 for a in ins):
            counts["bfloat16 products"] += 1
    assert counts["bfloat16 products"] > 0, counts
    if family == "tensorf":
        assert counts["grid gathers"] > 0 and counts["scatter-adds"] > 0, counts  # the checks above did check

