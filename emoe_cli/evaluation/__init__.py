"""Scoring: metrics, evaluation passes, saved predictions, and `emoe-eval`."""
