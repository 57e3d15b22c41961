"""Unsupervised domain adaptation of white-blood-cell classifiers (resnet18; AdaBN, MCC, MDD, IM, BNM, colour transfer)."""

import os

# albumentations asks PyPI for a newer version at import; a lab's offline machine (and every loader
# process) would wait on it for nothing
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# torch's idle OpenMP threads sleep instead of spinning: a run beside another on the same cores then takes about
# its share instead of several times longer (submission/cores.py; set before torch starts its threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.2.0"
