"""What a run's configuration is and may be: the typed schema, the cross-key checks, the run
folder names and the pre-Hydra check of the command line; it imports no torch."""
