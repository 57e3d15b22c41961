"""The demo's synthetic data in the challenge's layout: `lab.py` writes the data root (sources, the demo lab's
WBC1/WBC2, and for studies lab B and the oracle), `cells.py` draws each cell from its class's morphology.
`python -m submission.demo --dest DIR` runs it."""
