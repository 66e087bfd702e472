"""Scoring: metrics, evaluation passes, saved predictions (`emoe-eval` itself is cli/evaluate.py)."""
