"""The V3 entry point ComfyUI loads (only comfy_entrypoint is exported: with
NODE_CLASS_MAPPINGS present ComfyUI would ignore it)."""
from comfy_api.latest import ComfyExtension, io

from .deepcache_node import DeepCacheNode

try:  # the front-end panel's routes (/deepcache/plan, /deepcache/costs); never break the node
    from . import routes  # noqa: F401
except Exception as e:  # pragma: no cover
    import logging
    logging.getLogger("DeepCache").warning("DeepCache: panel routes not available: %s", e)


class DeepCacheExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [DeepCacheNode]


async def comfy_entrypoint() -> DeepCacheExtension:
    return DeepCacheExtension()
