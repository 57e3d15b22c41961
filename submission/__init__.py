"""Unsupervised domain adaptation of white-blood-cell classifiers (resnet18; MCC, MDD, AdaBN, colour transfer)."""

import os

# albumentations asks PyPI for a newer version at import; a lab's offline machine (and every loader
# process) would wait on it for nothing
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.2.0"
