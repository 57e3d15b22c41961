"""Progress displays (rich): one style for preparing data, predicting and training."""

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _columns():
    return (TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn())


def data_progress(console=None) -> Progress:
    """A transient bar with ETA for preparing images and predicting."""
    return Progress(*_columns(), console=console, transient=True)


def train_progress(console=None) -> Progress:
    """The training bar: steps done, elapsed, ETA and the latest losses (the `info` field)."""
    return Progress(*_columns(), TextColumn("{task.fields[info]}"), console=console)
