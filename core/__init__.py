"""Host-agnostic DeepCache engine: imports only torch, numpy and einops.

The adapters (ComfyUI in ``nodes/``, A1111/Forge in ``scripts/``) translate their
host's notion of run, step, conditioning and hooks into the objects defined here.
"""
from .config import ConfigError, DeepCacheConfig
from .cost import branch_cost_fractions, estimated_speedup
from .run import Mode, RunState
from .schedule import StepKind, plan_run, refresh_steps
from .store import CacheStore, RunCache, shared_store
from .unet_forward import NotAUNetError, UNetOps, describe_unet, unet_forward

__all__ = [
    "DeepCacheConfig", "ConfigError", "refresh_steps", "plan_run", "StepKind",
    "CacheStore", "RunCache", "shared_store", "UNetOps", "unet_forward", "describe_unet",
    "NotAUNetError", "RunState", "Mode", "branch_cost_fractions", "estimated_speedup",
]
