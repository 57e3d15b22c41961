"""One training run: the epoch loop (loop), one step (step), checkpoints, and torchrun."""
