"""Fine-tuning: the loop, checkpoints and resume, signals, samplers, LoRA."""
