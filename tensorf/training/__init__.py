"""Training: the optimizer (optimizer.py), the jitted step (step.py) and the loop around it
(loop.py), which owns all I/O: ray pool, schedule events, logging, checkpoints."""
