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
    cfg, _ = trained_run
    model = make_model(dataclasses.replace(cfg.model, compute_dtype="float16"))
    params = model.init(jax.random.key(0))
    tx = make_optimizer(model, cfg.optim)
    opt = tx.init(params)
    step = make_train_step(model, tx, functools.partial(lrs_at, cfg), 256)
    pool = jax.device_put(RayPool.from_views(load_blender(scene, "train")))
    zero, key = jnp.int32(0), jax.random.key(1)
    # A scale so large that the scaled float16 gradients overflow: the update is skipped.
    huge = {"scale": jnp.float32(1e30), "fin_steps": jnp.int32(7)}
    p, o, totals, scale, _, stats = step(params, opt, initial_totals(), huge, pool, zero, None, key)
    assert np.isfinite(float(stats["loss"]))
    assert int(totals["skipped"]) == 1 and float(scale["scale"]) == float(np.float32(1e30)) / 2 and int(scale["fin_steps"]) == 0
    for a, b in zip(jax.tree.leaves((p, o)), jax.tree.leaves((params, opt)), strict=True):
        np.testing.assert_array_equal(a, b)
    # At the initial scale the same step goes through, in float32 master params.
    p, o, totals, scale, _, _ = step(params, opt, totals, initial_loss_scale(), pool, zero, None, key)
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
