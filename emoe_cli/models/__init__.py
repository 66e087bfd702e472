"""The pre-trained model a run starts from: loading it, the stochastic depth ViT lacks, and what
its FFNs cost per token (dense or routed), measured next to the accuracy."""
