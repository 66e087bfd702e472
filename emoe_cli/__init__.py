"""emoe: an experiment runner for Emergent Mixture-of-Experts."""
