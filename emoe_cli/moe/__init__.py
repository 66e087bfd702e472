"""The EMoE method: balanced clustering of FFN keys, the EMoE layer, routers, `emoefy`."""

from emoe_cli.moe.clustering import balanced_kmeans
from emoe_cli.moe.convert import attach_router_refresh, emoe_modules, emoefy, refresh_routers
from emoe_cli.moe.export import export_dense
from emoe_cli.moe.layer import EMoEFeedForward
from emoe_cli.moe.layers import resolve_layers
from emoe_cli.moe.receipt import all_experts
from emoe_cli.moe.serialize import load_emoe, save_emoe

__all__ = [
    "EMoEFeedForward",
    "all_experts",
    "attach_router_refresh",
    "balanced_kmeans",
    "emoe_modules",
    "emoefy",
    "export_dense",
    "load_emoe",
    "refresh_routers",
    "resolve_layers",
    "save_emoe",
]
