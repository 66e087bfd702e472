"""The EMoE method: balanced clustering of FFN keys, the EMoE layer, routers, `emoefy`, and
the `LayerSpec` that describes a converted layer; how a layer is computed fast lives in
`emoe_cli/engine/`.

The names below load their module (and torch) on first use, so that the torch-free modules
of this package (`choices`, `layers`, `profile`) can be imported alone by the CLI's checks.
"""

from importlib import import_module

_HOMES = {
    "EMoEFeedForward": "layer",
    "LayerSpec": "spec",
    "all_experts": "receipt",
    "attach_router_refresh": "convert",
    "balance_loss": "convert",
    "balanced_kmeans": "clustering",
    "emoe_modules": "convert",
    "emoefy": "convert",
    "emoefy_spec": "convert",
    "export_dense": "export",
    "load_emoe": "serialize",
    "refresh_routers": "convert",
    "resolve_layers": "layers",
    "save_emoe": "serialize",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
