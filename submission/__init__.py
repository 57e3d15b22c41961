"""Unsupervised domain adaptation of white-blood-cell classifiers (MDD on resnet18)."""

__version__ = "0.1.0"
