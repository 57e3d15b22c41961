"""`python -m submission.experiments` keeps working: the recipes table is `python -m submission.study --recipes`."""

import sys

from submission.studies.study import app

if __name__ == "__main__":
    if "--recipes" not in sys.argv:
        sys.argv[1:1] = ["--recipes", "source-only,kit"]
    app()
