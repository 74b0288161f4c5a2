"""Host-agnostic DeepCache engine: imports only torch, numpy and einops.

The adapters (ComfyUI in ``nodes/``, A1111/Forge in ``scripts/``) translate their
host's notion of run, step, conditioning and hooks into the objects defined here.
"""
from .config import DeepCacheConfig, ConfigError
from .schedule import refresh_steps, plan_run, StepKind
from .store import CacheStore, RunCache, shared_store
from .unet_forward import UNetOps, unet_forward, describe_unet, NotAUNetError
from .run import RunState, Mode
from .cost import branch_cost_fractions, estimated_speedup

__all__ = [
    "DeepCacheConfig", "ConfigError", "refresh_steps", "plan_run", "StepKind",
    "CacheStore", "RunCache", "shared_store", "UNetOps", "unet_forward", "describe_unet",
    "NotAUNetError", "RunState", "Mode", "branch_cost_fractions", "estimated_speedup",
]
