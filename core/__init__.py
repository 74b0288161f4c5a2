"""Host-agnostic DeepCache engine: imports only torch, numpy and einops.

The adapters (ComfyUI in ``nodes/``, A1111/Forge in ``a1111/``) translate their host's
notion of run, step, conditioning and hooks into the objects defined here, and send
every U-Net call through ``call_unet``.
"""
from .block_ops import BlockOps, LdmOps
from .call import call_unet, open_call
from .config import ConfigError, DeepCacheConfig
from .run import Mode, RunState, RunSummary
from .schedule import StepKind, plan_run, refresh_steps
from .stand_ins import StandIns
from .store import CacheStore, RunCache, shared_store
from .unet_forward import NotAUNetError, UNetOps, describe_unet, unet_forward

__all__ = [
    "DeepCacheConfig", "ConfigError", "refresh_steps", "plan_run", "StepKind", "CacheStore", "RunCache",
    "shared_store", "UNetOps", "unet_forward", "describe_unet", "NotAUNetError", "RunState", "RunSummary", "Mode",
    "BlockOps", "LdmOps", "StandIns", "call_unet", "open_call",
]
