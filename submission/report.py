"""`python -m submission.report` keeps working: the command lives in submission.scoring.plots."""

from submission.scoring.plots import *  # noqa: F401,F403
from submission.scoring.plots import app

if __name__ == "__main__":
    app()
