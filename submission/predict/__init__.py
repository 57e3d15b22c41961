"""Checkpoint to logits to CSV: inference with TTA, ensembles and the challenge's submission file.
Never imports the training loop."""
