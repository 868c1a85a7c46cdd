"""Train a radiance field (TensoRF, NeRF, JaxNeRF+). `python train_lego.py --help` lists every option.

    python train_lego.py                                  # official lego recipe, ./data/nerf_synthetic/lego
    python train_lego.py --preset generated               # the generated scene, no download
    python train_lego.py --preset nerf --help             # NeRF's options, with the preset's values
    python train_lego.py --preset generated model:nerf    # another model family on the same data
    python train_lego.py --resume runs/lego               # continue a run from its last checkpoint
    python train_lego.py --overwrite --run-dir runs/lego  # start over in a folder that holds a run
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path

import jax
import tyro

from tensorf.config import MipNeRF360Config, MipNeRFConfig, NeRFConfig, TensoRFConfig, TrainConfig
from tensorf.errors import UserError, exit_on_user_error
from tensorf.host_memory import keep_freed_memory
from tensorf.presets import GPU_SIZED, PRESETS
from tensorf.run import load_config
from tensorf.training.loop import train
from tensorf.xla_cache import use_persistent_cache


FAMILIES = {"tensorf": TensoRFConfig, "nerf": NeRFConfig, "mipnerf": MipNeRFConfig, "mipnerf360": MipNeRF360Config}


@functools.cache
def _config_class(model_cls: type) -> type:
    """TrainConfig with its model field narrowed to one family, so that --help lists that
    family's options flat (--model.coarse-samples ...) instead of a subcommand list."""
    return dataclasses.make_dataclass(
        "TrainConfig", [("model", model_cls, dataclasses.field(default=model_cls()))], bases=(TrainConfig,), frozen=True
    )


DEFAULT_PRESET = "lego"  # a run started with no --preset (a resumed one takes its saved config)


def _pre_parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """--preset, --resume and --overwrite, and the options left for tyro."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default=None)  # None: DEFAULT_PRESET, unless resuming
    pre.add_argument("--resume", type=Path, default=None)
    pre.add_argument("--overwrite", action="store_true")
    return pre.parse_known_args(argv)


def parse(argv: list[str]) -> tuple[TrainConfig, bool, bool]:
    """(config, resume, overwrite) from the command line."""
    known, rest = _pre_parse(argv)
    description = (
        "Train a radiance field (writes RUN/config.json, RUN/checkpoints, RUN/tb, RUN/eval).\n\n"
        "model:tensorf | model:nerf   the model family (default: the preset's); its options follow.\n"
        "--preset NAME   start from a named config, then apply the options below: "
        + "; ".join(f"{k}: {v[0]}" for k, v in PRESETS.items())
        + ".\n--resume RUN    continue RUN from its newest checkpoint with its saved config "
        "(options below still override it, e.g. more --steps; not ones that change parameter shapes)."
        "\n--overwrite     start over in a run directory that already holds a run (deletes its checkpoints, logs, exports and renders; keeps camera paths)."
    )
    if known.resume is not None and known.overwrite:
        raise UserError("--resume continues a run and --overwrite deletes it; give one of them")
    if known.resume is not None and known.preset is not None:
        raise UserError(f"--resume {known.resume} continues the run with its saved config ({known.resume}/config.json); "
                        f"--preset {known.preset} does not apply to it: drop it (options still override the saved ones)")
    if known.resume is not None:
        base = dataclasses.replace(load_config(known.resume), run_dir=known.resume)
    else:
        base = PRESETS[known.preset or DEFAULT_PRESET][1]
    families = [a for a in rest if a.startswith("model:")]
    rest = [a for a in rest if not a.startswith("model:")]
    if families:
        name = families[-1].split(":", 1)[1]
        if name not in FAMILIES:
            raise UserError(f"{families[-1]}: unknown model family; choose one of "
                            + ", ".join(f"model:{k}" for k in FAMILIES))
        if not isinstance(base.model, FAMILIES[name]):
            base = dataclasses.replace(base, model=FAMILIES[name]())
    cls = _config_class(type(base.model))
    fields = lambda c: {f.name: getattr(c, f.name) for f in dataclasses.fields(TrainConfig)}  # noqa: E731
    cfg = tyro.cli(cls, default=cls(**fields(base)), args=rest, description=description)
    if known.resume is not None and Path(cfg.run_dir).resolve() != Path(known.resume).resolve():
        # It would train from step 0 in the new directory with the old one's config.
        raise UserError(f"--resume {known.resume} continues that run in its own directory, and --run-dir {cfg.run_dir} "
                        f"would start another from step 0; to branch the run, copy it (cp -r {known.resume} "
                        f"{cfg.run_dir}) and --resume {cfg.run_dir}")
    return TrainConfig(**fields(cfg)), known.resume is not None, known.overwrite


def cpu_note(preset: str, cfg: TrainConfig, backend: str) -> str | None:
    """A line for someone about to train a GPU-sized preset's whole schedule on a CPU, where it
    takes hours to weeks (the official lego recipe's 30k steps at 300^3), or None."""
    if backend != "cpu" or preset not in GPU_SIZED or cfg.time_budget_minutes is not None \
            or cfg.steps != PRESETS[preset][1].steps:  # a length of one's own choosing: one knows
        return None
    alternative = GPU_SIZED[preset]
    instead = f"--preset {alternative}, or " if alternative else ""
    return (f"note: --preset {preset} is sized for a GPU ({cfg.steps} steps); on this CPU it takes hours or more. "
            f"For minutes: {instead}--time-budget-minutes N, which fits the schedule into N minutes")


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()
    use_persistent_cache()
    argv = sys.argv[1:] if argv is None else argv
    with exit_on_user_error():
        cfg, resume, overwrite = parse(argv)
        if cfg.distributed:  # before any other JAX call
            jax.distributed.initialize(coordinator_address=cfg.coordinator_address, num_processes=cfg.num_processes,
                                       process_id=cfg.process_id)
        note = None if resume else cpu_note(_pre_parse(argv)[0].preset or DEFAULT_PRESET, cfg, jax.default_backend())
        if note and jax.process_index() == 0:
            print(note, flush=True)
        result = train(cfg, resume=resume, overwrite=overwrite)
        line = f"done: {result.steps} steps in {result.elapsed_s:.0f}s"
        if result.rays_per_s > 0:  # a resumed run that ended before its first log step measured none
            line += f", {result.rays_per_s:.0f} rays/s"
        if result.eval_metrics:
            m = result.eval_metrics
            line += f"; eval PSNR {m['psnr']:.2f} SSIM {m['ssim']:.4f}"
        if jax.process_index() == 0:
            print(line)
            print(f"run directory: {cfg.run_dir}")


if __name__ == "__main__":
    main()
