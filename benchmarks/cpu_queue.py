"""How many multi-device steps may be queued on forced CPU devices before XLA stalls one's
all-reduce? Plain JAX, no tensorf: the reason the training loop waits for its steps every
CPU_QUEUE steps over several CPU devices (training/trainer.py).

    python benchmarks/cpu_queue.py [--seconds 60] [--devices 4] [--queues 8 32 100]

Each case runs in its own process (XLA reads the forced device count once, and a stalled
rendezvous aborts the process after 40 s): a jitted step with an all-reduce, dispatched back to
back for --seconds and waited for every --queues steps, with a second thread beside it that
either compiles new programs one after another (as --compile-ahead does) or does nothing.
Prints, per case, the steps run or how the process ended.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from typing import Literal

import tyro

Beside = Literal["nothing", "compile"]

CHILD = r"""
import sys, threading, time
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

seconds, queue, beside = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
mesh = Mesh(jax.devices(), ("d",))
x = jax.device_put(jnp.ones((4096, 64)), NamedSharding(mesh, P("d")))
# The mean over the sharded rows is the all-reduce.
step = jax.jit(lambda x: jnp.tanh(x @ jnp.ones((64, 64))) - jnp.tanh(x).mean(0),
               out_shardings=NamedSharding(mesh, P("d")))
stop, made = threading.Event(), [0]

def compile_beside():
    while not stop.is_set():
        made[0] += 1
        n = made[0]
        jax.jit(lambda y: jnp.sin(y @ y.T).sum() * n).lower(jax.ShapeDtypeStruct((300 + n, 50), jnp.float32)).compile()

thread = threading.Thread(target=compile_beside) if beside == "compile" else None
if thread is not None:
    thread.start()
t0, steps = time.time(), 0
while time.time() - t0 < seconds:
    x = step(x)
    steps += 1
    if steps % queue == 0:
        x.block_until_ready()
x.block_until_ready()
stop.set()
if thread is not None:
    thread.join()
print(f"RESULT {steps} {made[0]}", flush=True)
"""


@dataclasses.dataclass(frozen=True)
class Args:
    """Multi-device steps queued on forced CPU devices, with or without a compiling thread."""

    seconds: float = 60.0
    """How long each case dispatches steps."""
    devices: int = 4
    """Forced CPU devices."""
    queues: tuple[int, ...] = (8, 32, 100)
    """Steps dispatched between waits, one case each."""
    beside: tuple[Beside, ...] = ("nothing", "compile")
    """What a second thread does meanwhile, one case each."""


def run_case(args: Args, queue: int, beside: Beside) -> str:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices}",
           "JAX_PLATFORMS": "cpu"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.seconds), str(queue), beside], env=env,
                          capture_output=True, text=True, timeout=args.seconds + 300)
    wall = time.perf_counter() - t0
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode == 0 and result:
        steps, made = map(int, result[0].split()[1:])
        return f"{steps} steps" + (f", {made} programs compiled beside" if beside == "compile" else "")
    stalled = [line for line in proc.stderr.splitlines() if "arrived on time" in line]
    why = stalled[-1].split("Exiting to ensure a consistent program state. ")[-1] if stalled else proc.stderr[-300:]
    return f"aborted after {wall:.0f} s (exit status {proc.returncode}): {why.strip()}"


def main(args: Args) -> None:
    import jax

    print(f"jax {jax.__version__}, {os.cpu_count()} CPU cores, {args.devices} forced devices, {args.seconds:.0f} s a case")
    print("| steps queued | beside | outcome |\n|---|---|---|")
    for queue in args.queues:
        for beside in args.beside:
            print(f"| {queue} | {beside} | {run_case(args, queue, beside)} |", flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
