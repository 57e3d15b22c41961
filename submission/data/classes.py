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

# as a hematologist writes them (the report and the labelling page); files keep the names above
DISPLAY: dict[str, str] = {
    "basophil": "Basophil", "eosinophil": "Eosinophil", "erythroblast": "Erythroblast", "myeloblast": "Myeloblast",
    "promyelocyte": "Promyelocyte", "myelocyte": "Myelocyte", "metamyelocyte": "Metamyelocyte",
    "neutrophil_banded": "Band neutrophil", "neutrophil_segmented": "Segmented neutrophil", "monocyte": "Monocyte",
    "lymphocyte_typical": "Lymphocyte",
}


def display(name: str) -> str:
    """A class's name as a hematologist writes it (a name the kit does not know: as given, underscores as spaces)."""
    return DISPLAY.get(name, str(name).replace("_", " "))
