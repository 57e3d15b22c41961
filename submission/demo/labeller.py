"""A simulated labeller for the demo and the studies: it answers only the cells the lab report asked for,
from the demo's known labels, as a hematologist would in the report's "Label these cells" section.

    python -m submission.demo.labeller runs/asked_WBC1.csv --truth demo/labels --out labels.csv
"""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from submission.data.files import write_csv
from submission.data.labels import ASK_COLUMNS, labels_frame
from submission.errors import KitError, user_errors


def answer(asked: pd.DataFrame, truth: pd.Series, first: int | None = None) -> pd.DataFrame:
    """labels.csv for the asked cells (the first `first` of them, in asking order): the true class of each."""
    asked = asked if first is None else asked.head(first)
    missing = [im for im in asked["Image"] if im not in truth.index]
    if missing:
        raise KitError(f"the truth does not know {len(missing)} asked cells (e.g. {missing[0]})")
    split = str(asked["Split"].iloc[0])
    return labels_frame(split, asked["Image"], truth.loc[asked["Image"]].to_numpy(), asked[["Image", *ASK_COLUMNS]])


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    asked: Annotated[Path, typer.Argument(help="The cells the lab report asked for (ASKED_SPLIT.csv beside it).")],
    truth: Annotated[Path, typer.Option(help="The demo's known labels: a CSV or a folder of SPLIT.csv.")] = Path("demo/labels"),
    out: Annotated[Path, typer.Option(help="The labels.csv to write.")] = Path("labels.csv"),
    first: Annotated[int, typer.Option(help="Answer only the first N asked cells (0: all).")] = 0,
):
    """Answer the asked cells from the known labels (a simulated hematologist; the demo says so)."""
    from submission.predict.submit import read_labels

    frame = pd.read_csv(asked, dtype={"Image": str, "Split": str})
    if frame.empty:
        raise KitError(f"{asked} asks for no cells")
    labels = answer(frame, read_labels(truth, str(frame["Split"].iloc[0])), first or None)
    write_csv(out, labels)
    print(f"wrote {out}: {len(labels)} cells labelled by the simulated labeller (the demo's known labels, only for "
          "the cells the report asked for)")


if __name__ == "__main__":
    app()
