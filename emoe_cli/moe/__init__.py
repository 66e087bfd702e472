"""The EMoE method: balanced clustering of FFN keys, the EMoE layer, routers, `emoefy`, and
the `LayerSpec` that describes a converted layer; how a layer is computed fast lives in
`emoe_cli/engine/`."""

from emoe_cli.moe.clustering import balanced_kmeans
from emoe_cli.moe.convert import (
    attach_router_refresh,
    emoe_modules,
    emoefy,
    emoefy_spec,
    refresh_routers,
)
from emoe_cli.moe.export import export_dense
from emoe_cli.moe.layer import EMoEFeedForward
from emoe_cli.moe.layers import resolve_layers
from emoe_cli.moe.receipt import all_experts
from emoe_cli.moe.serialize import load_emoe, save_emoe
from emoe_cli.moe.spec import LayerSpec

__all__ = [
    "EMoEFeedForward",
    "LayerSpec",
    "all_experts",
    "attach_router_refresh",
    "balanced_kmeans",
    "emoe_modules",
    "emoefy",
    "emoefy_spec",
    "export_dense",
    "load_emoe",
    "refresh_routers",
    "resolve_layers",
    "save_emoe",
]
