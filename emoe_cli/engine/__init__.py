"""How an EMoE layer is computed fast on CPUs: the sparse path, its cost model, its threads,
and the process settings (OpenMP, allocator) it is measured under.

Kept apart from `moe/` (the method as the paper writes it) so that the layer reads as its
equations and calls this package through one small interface (`engine/strategy.py`); this
file imports nothing, so `engine.openmp` can run before torch is loaded.
"""

# The layer's `execution` choices; here, torch-free, so config checks can read them.
EXECUTIONS = ("auto", "masked", "sparse")
