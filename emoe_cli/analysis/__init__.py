"""Analyses of trained EMoE models: routing statistics and their plots."""
