"""One file per method, each with its formula and source: the network (model), MDD, MCC, AdaBN,
target-informed colour augmentation (colour), EM prior correction (prior) and test-time augmentation (tta)."""
