"""Scoring: metrics, evaluation passes, saved predictions (`emoe-eval` is cli/evaluate.py)."""
