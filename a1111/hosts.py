"""Where the U-Net is and how a run is attached to it, per host.

A1111: an instance forward on p.sd_model.model.diffusion_model, installed when
the sampler starts and removed when it returns. Forge (detected by
p.sd_model.forge_objects): a U-Net function wrapper on a UnetPatcher clone.
"""
from __future__ import annotations

import sys
from typing import Optional

from . import forge_patch
from .clock import SamplerRun
from .forge_patch import ForgeWrapper, foreign_wrapper
from .ldm_patch import LdmPatch, foreign_forward

# patches that are on a U-Net right now; removed at the next job start whatever happened
LIVE_PATCHES: set = set()


def is_forge(p) -> bool:
    return hasattr(p.sd_model, "forge_objects")


def remove_live_patches() -> int:
    n = 0
    for patch in list(LIVE_PATCHES):
        patch.remove()
        patch.run.state.close()
        LIVE_PATCHES.discard(patch)
        n += 1
    return n


def lowvram() -> bool:
    opts = getattr(sys.modules.get("modules.shared"), "cmd_opts", None)
    return any(getattr(opts, k, False) for k in ("lowvram", "medvram", "medvram_sdxl"))


class A1111Host:
    name = "A1111"
    rows_in_cfg_batch = True  # on_cfg_denoiser's x is the whole CFG batch, cond rows first

    def __init__(self, p):
        self.sd_model = p.sd_model
        self.unet = p.sd_model.model.diffusion_model
        self.patch: Optional[LdmPatch] = None

    def blocker(self) -> Optional[str]:
        reason = foreign_forward(self.unet)
        if reason:
            return reason
        if getattr(sys.modules.get("modules.sd_unet"), "current_unet", None) is not None:
            return "an SD Unet (for example TensorRT) replaces the U-Net"
        return None

    def prepare(self, p, depth: int, branch: int) -> None:
        self.depth, self.branch = depth, branch

    def attach(self, run: SamplerRun) -> None:
        reason = self.blocker()  # someone may have hooked in since prepare
        if reason:
            run.state.disable(reason)
            return
        # the fake-tensor FLOP count would trigger --lowvram's weight moves
        self.patch = LdmPatch(self.unet, self.depth, self.branch, run, sd_model=self.sd_model,
                              estimate_cost=not lowvram())
        self.patch.install()
        LIVE_PATCHES.add(self.patch)

    def detach(self) -> None:
        if self.patch is not None:
            self.patch.remove()
            LIVE_PATCHES.discard(self.patch)
            self.patch = None


class ForgeHost:
    name = "Forge"
    rows_in_cfg_batch = False  # Forge's x there is not duplicated; its chunks say cond/uncond

    def __init__(self, p):
        self.patcher = p.sd_model.forge_objects.unet
        self.unet = self.patcher.model.diffusion_model
        self.wrapper: Optional[ForgeWrapper] = None

    def blocker(self) -> Optional[str]:
        return foreign_wrapper(self.patcher)

    def prepare(self, p, depth: int, branch: int) -> None:
        existing = self.patcher.model_options.get("model_function_wrapper")
        # a second call for the same sampling finds its own wrapper: nothing to do
        self.wrapper = existing if isinstance(existing, ForgeWrapper) else ForgeWrapper(depth, branch)
        forge_patch.install(p, self.wrapper)

    def attach(self, run: SamplerRun) -> None:
        self.wrapper.run = run

    def detach(self) -> None:
        if self.wrapper is not None:
            self.wrapper.run = None


def host_for(p):
    return ForgeHost(p) if is_forge(p) else A1111Host(p)
