"""`python -m submission.demo` keeps working: the command lives in submission.studies.demo."""

from submission.studies.demo import *  # noqa: F401,F403
from submission.studies.demo import app

if __name__ == "__main__":
    app()
