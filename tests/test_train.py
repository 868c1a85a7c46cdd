"""Training on the generated scene, through upsampling and two mask updates, improves held-out
PSNR well beyond the starting point."""

import json
import time

import jax
import numpy as np
import pytest

from conftest import make_model
from tensorf.data.blender import load_blender
from tensorf.eval import evaluate_views
from tensorf.metrics import lpips_available
from tensorf.run import load_config


def test_training_raises_test_psnr(scene, trained_run, tmp_path):
    cfg, result = trained_run
    test = load_blender(scene, "test")
    model = make_model(cfg.model)
    fresh = model.init(jax.random.key(0))
    start = evaluate_views(model, fresh, test, tmp_path / "start", "test", 1024, False)
    end = result.eval_metrics
    assert end["psnr"] > start["psnr"] + 8.0, (start["psnr"], end["psnr"])
    assert end["psnr"] > 20.0 and end["ssim"] > start["ssim"]
    # The loop went through what the run's schedule holds: both mask updates (box shrunk, a mask
    # in force, compacted work with budgets), both upsamplings.
    state = result.model_state
    assert state["mask_updates"] == 2 and state["level"] == 2
    shrink = np.subtract(*reversed(cfg.data.aabb)) - np.diff(np.asarray(result.params["aabb"]), axis=0)[0]
    assert shrink.max() > 0.05, shrink  # the box was cropped to the occupied region
    assert result.params["occupancy"].shape == tuple(state["mask"]) and state["budgets"] is not None
    # The steps for the upsamplings at 100 and 250 were compiled ahead (at 250 with budgets the
    # event's measurement fits); the shrink's crop at 150 is known only at the event. An event
    # compiled ahead compiled nothing on the loop's thread: its own programs were compiled too
    # (the loop waits for those still compiling).
    ahead = {step: hit for step, _, hit in result.compiles}
    assert ahead[0] is False and ahead[100] and ahead[150] is False and ahead[250], result.compiles
    assert [step for step, *_ in result.event_compiles] == [100, 150, 250, 300]
    for step, seconds, names in result.event_compiles:
        assert not ahead[step] or names == [], (step, seconds, names)
        assert ahead[step] or "jit(step)" in names, (step, seconds, names)
    run = cfg.run_dir
    written = sorted(p.name for p in (run / "eval" / "test").glob("*.png"))
    assert written == sorted(f"{n}.png" for n in test.names)
    assert np.isfinite(result.rays_per_s) and result.rays_per_s > 0
    assert (run / "eval" / "test_metrics.json").is_file()
    saved = load_config(run).model  # TV and L1 auto in a Blender scene: official lego's
    assert (saved.tv_weight_density, saved.tv_weight_appearance) == (0.0, 0.0)
    assert (saved.l1_weight, saved.l1_weight_rest) == (8e-5, 4e-5)
    events = b"".join(p.read_bytes() for p in (run / "tb").iterdir())
    for tag in (b"train/psnr", b"train/lr_grid", b"train/rays_per_s", b"train/dropped", b"train/ray_pool",
                b"train/budget_density", b"eval/rgb", b"eval/depth", b"eval/error"):
        assert tag in events, tag


def test_eval_cli_on_another_split_and_folder(scene, trained_run, tmp_path):
    import shutil

    from tensorf.eval import EvalArgs, main

    cfg, _ = trained_run
    other = tmp_path / "copy"
    shutil.copytree(scene, other)
    metrics = main(EvalArgs(run_dir=cfg.run_dir, dataset_path=other, split="val", views=(1, 2)))
    assert [v["view"] for v in metrics["views"]] == ["r_1", "r_2"]
    assert metrics["psnr"] > 20.0
    written = json.loads((cfg.run_dir / "eval" / "val_metrics.json").read_text())
    if lpips_available():  # VGG's, as the TensoRF paper reports, and AlexNet's
        assert 0 < written["lpips"] < 1 and 0 < written["lpips_alex"] < 1
        assert all("lpips" in v for v in written["views"])


def test_steps_between_logs_transfer_nothing(scene, tmp_path, monkeypatch):
    """The loop queues its steps under jax.transfer_guard("disallow"): a run with schedule events,
    logs and a checkpoint completes, and a value sent per step (the learning rate, as the loop once
    did) stops it. (The CPU backend shares memory with the host, so there only host-to-device
    transfers count; on a GPU a per-step fetch is caught as well.)"""
    from conftest import tiny_config
    from tensorf.training import loop, trainer

    cfg = tiny_config(scene, tmp_path / "run", steps=12, log_every=6, checkpoint_every=6, final_eval=False,
                      model__mask_update_steps=(4,), model__upsample_steps=(8,), model__compaction="on",
                      model__mask_threshold=1e-12)
    result = loop.train(cfg)
    assert result.steps == 12 and result.model_state["level"] == 1 and result.compile_s > 0
    real = trainer.Trainer.train_step

    def chatty(self, sched):
        jax.numpy.float32(sched)
        return real(self, sched)

    monkeypatch.setattr(trainer.Trainer, "train_step", chatty)
    with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
        loop.train(tiny_config(scene, tmp_path / "chatty", steps=3, log_every=2, final_eval=False))


@pytest.mark.slow  # a checkpoint restored and judged per step of the schedule: most of a minute on 2 cores
def test_keep_best_keeps_the_checkpoint_with_the_best_eval_psnr(scene, tmp_path, monkeypatch):
    from conftest import tiny_config
    from tensorf.checkpoint import Checkpointer
    from tensorf.eval import EvalArgs
    from tensorf.eval import main as evaluate
    from tensorf.run import restore_run
    from tensorf.training import loop, progress

    # Also the time-to-quality curve, whose eval views render with the same compiled program;
    # each of its renders is made 0.3 s slower, time the training clock must not count.
    real = progress.evaluate_views

    def slow_quality(*args, **kwargs):
        if args[4] == "quality":
            time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(progress, "evaluate_views", slow_quality)
    cfg = tiny_config(scene, tmp_path / "run", steps=30, checkpoint_every=10, keep_best=True, log_every=10,
                      quality_every_s=1e-3, quality_views=2)
    t0 = time.perf_counter()
    result = loop.train(cfg)
    wall = time.perf_counter() - t0
    seconds, steps, psnrs = zip(*result.quality)
    assert len(steps) >= 5 and list(steps) == sorted(set(steps)) and list(seconds) == sorted(seconds)
    assert seconds[-1] <= result.elapsed_s < wall - 0.3 * len(steps)
    views = load_blender(scene, cfg.data.eval_split)
    assert steps[-1] == result.steps  # the last point is the final field's PSNR on the first 2 eval views
    first_two = evaluate_views(result.model, result.params, views.subset([0, 1]), tmp_path, "q", 1024, verbose=False,
                               write=False, with_lpips=False)
    np.testing.assert_allclose(psnrs[-1], first_two["psnr"], rtol=1e-5)
    written = json.loads((cfg.run_dir / "eval" / "quality.json").read_text())["seconds_step_psnr"]
    np.testing.assert_allclose(np.asarray(written), np.asarray(result.quality))
    views = load_blender(scene, cfg.data.eval_split)
    scores = {}
    for step in Checkpointer(cfg.run_dir, read_only=True).steps():
        _, model, params, _ = restore_run(cfg.run_dir, step)
        scores[step] = evaluate_views(model, params, views, tmp_path, "x", 1024, verbose=False, write=False,
                                      with_lpips=False)["psnr"]
    best = Checkpointer(cfg.run_dir, read_only=True, folder="best")
    (step,) = best.steps()
    assert step == max(scores, key=scores.get), scores
    np.testing.assert_allclose(best.meta(step)["val_psnr"], scores[step], rtol=1e-5)
    assert abs(evaluate(EvalArgs(run_dir=cfg.run_dir, split=cfg.data.eval_split, best=True))["psnr"] - scores[step]) < 1e-4


def test_stop_after_minutes_ends_early_with_a_checkpoint_on_the_step_schedule(scene, tmp_path):
    """--stop-after-minutes ends a run at its wall-clock limit, writes the last checkpoint there
    and keeps the step schedule (the upsampling at step 4 happens at step 4, not stretched)."""
    from conftest import tiny_config
    from tensorf.checkpoint import Checkpointer
    from tensorf.training.loop import train

    cfg = tiny_config(scene, tmp_path / "run", steps=100_000, log_every=50, checkpoint_every=0,
                      stop_after_minutes=0.1)
    result = train(cfg)
    assert 4 < result.steps < 100_000 and result.model_state["level"] == 1
    assert 6.0 <= result.elapsed_s < 30.0
    assert Checkpointer(cfg.run_dir, read_only=True).latest_step() == result.steps
