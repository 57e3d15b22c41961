"""The sources' normalisation: the target normalised by the sources' pooled mean and std, as if it were one more
source (no target pixel used: the treatment a model gets without any adaptation)."""

from submission.methods.adapt.treatment import Treatment

TREATMENT = Treatment(
    name="source", summary="the target normalised with the sources' mean and std (no target pixel used)",
    fits="nothing (the sources' pooled mean and std)", stores="the mean and std",
    fit=lambda t, s: {"norm": dict(t.source_norm), "bn": None, "note": None}, target_norm="source")
