"""Own normalisation: the target images normalised by their own per-channel mean and std (the kit's default;
label-free, no change to the network). The cheapest fix of a colour shift: it removes each channel's offset and
gain, whatever the stain."""

from submission.methods.adapt.treatment import Treatment

TREATMENT = Treatment(
    name="own", summary="the target normalised by its own mean and std (the kit's default)",
    fits="the target images' per-channel mean and std", stores="the mean and std",
    fit=lambda t, s: {"norm": t.own_norm(), "bn": None, "note": None}, target_norm="own")
