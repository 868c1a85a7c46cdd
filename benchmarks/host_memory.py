"""A training run's wall time, kernel time and page faults with glibc's malloc as it comes and as
tensorf/host_memory.py sets it (one heap kept for reuse).

    python benchmarks/host_memory.py [--steps 800] [--repeats 2] [--cache warm|off] ["--flags=--preset generated"] [--results FILE]

Each repeat runs `train_lego.py FLAGS --steps N --no-final-eval` once each way, in turn, as a
fresh process, and reads its resources from wait4. `--cache warm`: the persistent compilation
cache is filled by a first run (not reported), so the runs load their programs, as a recipe run
again does; `off`: every run compiles everything, as a first run does. "loop" is the run's own
"done: N steps in T s" figure.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import ROOT, add_rows, device_name  # noqa: E402
from tensorf.host_memory import OFF_VAR  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Time training runs with glibc's default malloc and with the tuned one."""

    steps: int = 800
    """Training steps per run."""
    repeats: int = 2
    """Runs each way (alternating, so that a busy machine slows both alike)."""
    flags: str = "--preset generated"
    """train_lego.py options for both runs (the data folder included, if not the generated scene's)."""
    cache: Literal["warm", "off"] = "warm"
    """warm: programs loaded from a filled persistent compilation cache; off: every run compiles."""
    results: Path | None = None
    """Append the rows to this markdown file (e.g. benchmarks/results.md)."""


def run_once(args: Args, tuned: bool, work: Path) -> dict[str, float]:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(work / "xla") if args.cache == "warm" else "")
    env[OFF_VAR] = "0" if tuned else "1"
    cmd = [sys.executable, str(ROOT / "train_lego.py"), *shlex.split(args.flags), "--steps", str(args.steps),
           "--no-final-eval", "--overwrite", "--run-dir", str(work / "run")]
    if "--data.path" not in args.flags:
        cmd += ["--data.path", str(work / "data")]
    start = datetime.datetime.now()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (datetime.datetime.now() - start).total_seconds()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: the run failed ({shlex.join(cmd)}):\n{out[-2000:]}")
    done = re.search(r"done: (\d+) steps in ([\d.]+)s", out)
    return {"wall": wall, "loop": float(done.group(2)) if done else float("nan"), "user": usage.ru_utime,
            "sys": usage.ru_stime, "faults": usage.ru_minflt, "rss": usage.ru_maxrss / 2**20}


def main(args: Args) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="host-memory-") as tmp:
        if args.cache == "warm":
            run_once(args, True, Path(tmp))
        for r in range(args.repeats):
            for tuned in (False, True):
                m = run_once(args, tuned, Path(tmp))
                label = "one heap, kept (host_memory.py)" if tuned else "glibc defaults"
                line = (f"| {datetime.date.today()} | {label} | {r} | {m['wall']:.1f} | {m['loop']:.0f} | {m['user']:.1f} | "
                        f"{m['sys']:.1f} | {m['faults'] / 1e6:.2f} | {m['rss']:.2f} |")
                print(line, flush=True)
                rows.append(line)
    if args.results:
        add_rows(args.results, f"## host_memory.py ({args.flags}, {args.steps} steps, compilation cache {args.cache}, {device_name()})",
                 "| date | malloc | repeat | wall s | loop s | user s | sys s | minor faults (M) | peak RSS GiB |\n"
                 "|---|---|---|---|---|---|---|---|---|", rows)


if __name__ == "__main__":
    main(tyro.cli(Args))
