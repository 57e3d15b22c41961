"""python -m submission.demo --dest DIR: the demo data (see submission/demo/lab.py)."""

from submission.demo.lab import app

app()
