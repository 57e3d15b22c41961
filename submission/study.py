"""`python -m submission.study` keeps working: the command lives in submission.studies.study."""

from submission.studies.study import *  # noqa: F401,F403
from submission.studies.study import app

if __name__ == "__main__":
    app()
