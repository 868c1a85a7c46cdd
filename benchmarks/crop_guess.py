"""How early the box shrink's crop can be guessed: train up to the first mask update with a
checkpoint every --every steps, then ask each checkpoint's field for the crop it would give
(TensoRFSchedule.guess_crop) and compare it with the event's. The share of the way from which
every guess equals the event's crop bounds the time a compile ahead of the shrink could have
(Schedule.ahead does not guess: benchmarks/results.md).

    python benchmarks/crop_guess.py --data ../shared/data/nerf_synthetic/lego --downscale 8 --batch 1024

With --downscale 8 --batch 1024 this is lego's schedule up to its shrink at 2000 on the official
128^3 grid, in about 16 minutes on 2 CPU cores (a checkpoint every 100 steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tensorf.models.base import build_schedule  # noqa: E402
from tensorf.presets import PRESETS  # noqa: E402
from tensorf.run import restore_run  # noqa: E402
from tensorf.training.loop import train  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--preset", default="lego", help="whose model and schedule (its first mask update shrinks)")
    p.add_argument("--downscale", type=int, default=8)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--every", type=int, default=100, help="steps between the guesses")
    p.add_argument("--run-dir", type=Path, default=None)
    args = p.parse_args()

    base = PRESETS[args.preset][1]
    shrink = min(base.model.mask_update_steps)
    last = max((s for s in base.model.upsample_steps if s < shrink), default=0)
    run = args.run_dir or Path(tempfile.mkdtemp(prefix="crop_guess_"))
    cfg = dataclasses.replace(
        base, run_dir=run, steps=shrink, batch_size=args.batch, log_every=args.every, eval_every=0,
        checkpoint_every=args.every, keep_checkpoints=shrink // args.every + 1, final_eval=False,
        data=dataclasses.replace(base.data, path=args.data, downscale=args.downscale))
    train(cfg, overwrite=True)
    guesses = []
    for step in range(max(last, args.every), shrink + 1, args.every):
        _, model, params, meta = restore_run(run, step)  # training stops before the event
        crop = build_schedule(model).guess_crop(params, meta["model_state"])
        guesses.append((step, None if crop is None else (crop[0].tolist(), crop[1].tolist())))
    final = guesses[-1][1]  # the field at the last step before the event: the event's crop
    print(f"the crop at the shrink (step {shrink}, grid points lo..hi): {final}")
    for step, crop in guesses:
        print(f"step {step:6d} ({(step - last) / (shrink - last):5.0%} of the way): {crop}"
              f"{'' if crop == final else '  (differs)'}")
    since = guesses[-1][0]
    for step, crop in reversed(guesses):
        if crop != final:
            break
        since = step
    print(f"every guess from step {since} on ({(since - last) / (shrink - last):.0%} of the way) is the event's crop")

if __name__ == "__main__":
    main()
