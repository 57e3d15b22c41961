"""`python -m submission.bench` keeps working: the command lives in submission.studies.bench."""

from submission.studies.bench import *  # noqa: F401,F403
from submission.studies.bench import app

if __name__ == "__main__":
    app()
