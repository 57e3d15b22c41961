"""The 11 cell classes of the challenge; the index is the challenge's LabelID."""

CLASSES: tuple[str, ...] = (
    "basophil",  # 0
    "eosinophil",  # 1
    "erythroblast",  # 2
    "myeloblast",  # 3
    "promyelocyte",  # 4
    "myelocyte",  # 5
    "metamyelocyte",  # 6
    "neutrophil_banded",  # 7
    "neutrophil_segmented",  # 8
    "monocyte",  # 9
    "lymphocyte_typical",  # 10
)
NUM_CLASSES = len(CLASSES)
CLASS_TO_ID: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
