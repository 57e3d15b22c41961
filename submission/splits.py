"""`python -m submission.splits` keeps working: the command lives in submission.data.splits."""

from submission.data.splits import *  # noqa: F401,F403
from submission.data.splits import app

if __name__ == "__main__":
    app()
