"""The EMoE method: balanced clustering of FFN keys, the EMoE layer, routers, `emoefy`."""

from emoe_cli.moe.clustering import balanced_kmeans
from emoe_cli.moe.convert import attach_router_refresh, emoe_modules, emoefy, refresh_routers
from emoe_cli.moe.layer import EMoEFeedForward
from emoe_cli.moe.layers import resolve_layers

__all__ = [
    "EMoEFeedForward",
    "attach_router_refresh",
    "balanced_kmeans",
    "emoe_modules",
    "emoefy",
    "refresh_routers",
    "resolve_layers",
]
