"""Where a profiled step's time goes, kernel by kernel: the newest perfetto trace under DIR (as
`step_profile.py --trace DIR` writes it), summed by event name on each track (the host's threads;
on a GPU each device's op and kernel lines), per step.

    python benchmarks/trace_summary.py DIR [--steps N] [--top 25] [--json OUT]

Names are XLA's (a GPU kernel is named after its fusion: `loop_gather_fusion`, `input_reduce_fusion.3`,
a cuBLAS `gemm`, ...), so the rows say which part of the step costs what once read against the
step's HLO. A CPU trace has host events only (the dispatch of each step): it rehearses this script.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import sys
from pathlib import Path

import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from tensorf.errors import UserError, exit_on_user_error  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Sum a profiler trace's events by name, per track and per step."""

    trace_dir: tyro.conf.Positional[Path]
    """Folder given to `step_profile.py --trace` (or jax.profiler.trace)."""
    steps: int | None = None
    """Steps the trace holds (None: as DIR/steps.json says, which step_profile.py writes)."""
    top: int = 25
    """Rows per track."""
    json: Path | None = None
    """Also write the rows here as JSON."""


def newest_trace(folder: Path) -> Path:
    found = sorted(folder.glob("plugins/profile/*/perfetto_trace.json.gz"))
    if not found:
        raise UserError(f"no plugins/profile/*/perfetto_trace.json.gz under {folder}; record one with "
                        "`python benchmarks/step_profile.py --trace DIR`")
    return found[-1]


def summarize(path: Path, steps: int) -> dict[str, list[dict]]:
    """{track: rows sorted by total time}, each row {name, count, ms_per_step, share of the
    track}: the events' own durations summed (nested events are counted at every level)."""
    try:
        trace = json.loads(gzip.open(path).read())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable perfetto trace ({error}); record it again") from None
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    meta = lambda kind: {(e.get("pid"), e.get("tid")): e["args"]["name"]  # noqa: E731
                         for e in events if e.get("ph") == "M" and e.get("name") == kind}
    processes = {pid: name for (pid, _), name in meta("process_name").items()}
    threads = meta("thread_name")
    totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            # A track: the process (host, a device) and its thread or stream without its id
            # suffix, so that a pool's threads add up and a device's ops and kernels do not.
            thread = threads.get((e.get("pid"), e.get("tid")), str(e.get("tid"))).split("/")[0]
            group = f"{processes.get(e.get('pid'), e.get('pid'))} / {thread}"
            totals[group][e["name"]] += float(e["dur"])  # microseconds
            counts[group][e["name"]] += 1
    out = {}
    for group, total in totals.items():
        whole = sum(total.values())
        out[group] = [{"name": name, "count": counts[group][name], "ms_per_step": us / 1000 / steps,
                       "share": us / whole} for name, us in total.most_common()]
    return out


def main(args: Args) -> dict:
    path = newest_trace(args.trace_dir)
    recorded = args.trace_dir / "steps.json"
    if args.steps is None and not recorded.is_file():
        raise UserError(f"how many steps {args.trace_dir} holds is not in {recorded}; give --steps")
    steps = args.steps or json.loads(recorded.read_text())["steps"]
    rows = summarize(path, steps)
    print(f"{path} ({steps} steps)")
    for group, group_rows in rows.items():
        print(f"\n## {group}\n| event | count | ms per step | share |\n|---|---|---|---|")
        for r in group_rows[: args.top]:
            print(f"| {r['name'][:80]} | {r['count']} | {r['ms_per_step']:.3f} | {100 * r['share']:.1f}% |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
