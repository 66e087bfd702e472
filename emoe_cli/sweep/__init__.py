"""Sweeps: run identities, the index of completed runs, the end-of-sweep tally, grid plans."""
