"""`python -m submission.importer` keeps working: the command lives in submission.data.importer."""

from submission.data.importer import *  # noqa: F401,F403
from submission.data.importer import app

if __name__ == "__main__":
    app()
