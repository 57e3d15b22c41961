"""Numbers about predictions: F1, the label-free validators and the checkpoint choice, MixVal, and a
run's tables and plots. NumPy where possible."""
