"""What compares runs: the demo data, the adaptation study and its report, the benchmark."""
