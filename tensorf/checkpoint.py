"""Checkpoints with orbax: params, optimizer state and the grid resolution in force at that step.

Layout: RUN/checkpoints/<step>/{state, meta}. `meta` (JSON) records the step, the model's
resolution and elapsed training time, so a checkpoint from before the last upsampling restores at
its own grid size whatever the final config says.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from tensorf.errors import UserError, warn


class Checkpointer:
    """RUN/<folder>/<step>: "checkpoints" (the newest `keep`), or "best" (the one --keep-best
    kept: the best val PSNR so far)."""

    def __init__(self, run_dir: Path, keep: int = 3, read_only: bool = False, folder: str = "checkpoints"):
        self.directory = (Path(run_dir) / folder).absolute()  # orbax wants absolute paths
        if read_only and not self.directory.is_dir():
            hint = "train it with --keep-best" if folder == "best" else "train it first"
            raise UserError(f"{self.directory}: no checkpoints in this run directory; {hint}")
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=None if read_only else keep, create=not read_only),
        )

    def steps(self) -> list[int]:
        return list(self._mgr.all_steps())

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def save(self, step: int, items: dict[str, Any], meta: dict[str, Any]) -> None:
        """Save pytrees `items` (e.g. params, opt_state) and JSON `meta`; asynchronous."""
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        with self._writing(step):
            self._mgr.save(step, args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **args), force=True)

    @contextlib.contextmanager
    def _writing(self, step: int):
        """A failed write (disk full, directory gone) as one line; orbax commits a checkpoint only
        once it is whole, so the last complete one stays usable."""
        try:
            yield
        except (OSError, ValueError, RuntimeError) as e:
            have = [s for s in self.steps() if s != step]
            keep = f"the newest complete checkpoint (step {max(have)}) stays usable" if have else "no checkpoint is complete"
            raise UserError(f"{self.directory}: writing checkpoint {step} failed ({_brief(e)}); {keep}. Free space or "
                            "fix the directory, then --resume") from None

    def wait(self) -> None:
        with self._writing(self.latest_step() or 0):
            self._mgr.wait_until_finished()

    def meta(self, step: int) -> dict[str, Any]:
        try:
            return dict(self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        except Exception as e:  # orbax raises a zoo of types for damaged folders
            raise UserError(f"{self.directory / str(step)}: checkpoint metadata unreadable ({_brief(e)})") from None

    def restore(self, step: int | None, template_for: Callable[[dict[str, Any]], dict[str, Any]]):
        """Restore (items, meta) at `step`, or at the newest checkpoint that reads back whole when
        step is None: a damaged or truncated newest one is reported in one warning line and the
        one before it is used.

        template_for(meta) returns {item name: pytree} for the items wanted, built from what the
        checkpoint says (its resolution), not from the current config.
        """
        if step is not None:
            if step not in self.steps():
                raise UserError(f"{self.directory}: no checkpoint at step {step} (have {self.steps()})")
            try:
                return self._restore(step, template_for)
            except UserError as e:
                raise UserError(f"{e}; pick another with --step (have {self.steps()})") from None
        steps = sorted(self.steps(), reverse=True)
        if not steps:
            raise UserError(f"{self.directory}: no finished checkpoint found; train the run first")
        for i, s in enumerate(steps):
            try:
                return self._restore(s, template_for)
            except UserError as e:
                if i + 1 == len(steps):
                    raise UserError(f"{e}; no earlier checkpoint reads back either") from None
                warn(f"{e}; using the one before it, step {steps[i + 1]}")
        raise AssertionError("unreachable")

    def _restore(self, step: int, template_for):
        meta = self.meta(step)
        try:
            templates = jax.eval_shape(lambda: template_for(meta))
            args = {name: ocp.args.StandardRestore(t) for name, t in templates.items()}
            restored = self._mgr.restore(step, args=ocp.args.Composite(**args))
        except Exception as e:
            raise UserError(
                f"{self.directory / str(step)}: checkpoint is damaged or does not match the model ({_brief(e)})"
            ) from None
        return {name: restored[name] for name in templates}, meta

    def discard_after(self, step: int) -> None:
        """Delete the checkpoints newer than `step` (a resumed run that fell back past a damaged one
        writes those steps again)."""
        for s in self.steps():
            if s > step:
                warn(f"{self.directory / str(s)}: deleting it; training resumes from step {step} and writes it again")
                self._mgr.delete(s)

    def close(self) -> None:
        with self._writing(self.latest_step() or 0):
            self._mgr.wait_until_finished()
        self._mgr.close()


def _brief(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0][:200]}" if text else e.__class__.__name__
