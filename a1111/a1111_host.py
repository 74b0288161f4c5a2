"""AUTOMATIC1111: DeepCache as an instance forward on p.sd_model.model.diffusion_model,
installed when the sampler starts and removed when it returns.

The forward it wraps is whatever the U-Net had: A1111's own (ldm/sgm UNetModel.forward
behind its sd_unet wrapper) or an extension's replacement, such as sd-webui-controlnet's,
which adds control residuals to every skip. Calls run through that forward (core.StandIns):
in full on refresh steps, with the deep path stood in on cached steps, so ControlNet's
residuals reach the blocks that run. Blocks stay modules, so --lowvram's hooks still move
their weights, and skipped blocks are never moved.
"""
from __future__ import annotations

import sys
from typing import Optional

from ..core import StandIns, call_unet, open_call
from .sampler_hook import SamplerRun

# patches on a U-Net right now; removed at the next job start whatever happened
LIVE_PATCHES: set = set()


class LdmPatch:
    """The instance forward of one sampler run."""

    def __init__(self, unet, branch: int, run: SamplerRun, *, sd_model=None):
        self.unet = unet
        self.run = run
        self.sd_model = sd_model
        self.checkpoint = getattr(sd_model, "sd_checkpoint_info", None)
        self.stand_ins = StandIns(unet, branch)
        self.original = None
        self.replaced = None  # an extension's instance forward under ours (ControlNet's), put back after

    def install(self) -> None:
        self.original = self.unet.forward  # what the U-Net would run now (ours shadows it)
        self.replaced = vars(self.unet).get("forward")
        self.unet.forward = self.forward
        LIVE_PATCHES.add(self)

    def remove(self) -> None:
        if vars(self.unet).get("forward") == self.forward:
            if self.replaced is not None:
                self.unet.forward = self.replaced
            else:
                del self.unet.forward
        LIVE_PATCHES.discard(self)

    def forward(self, x, *args, **kwargs):
        run, state = self.run, self.run.state

        def host():
            return self.original(x, *args, **kwargs)

        if not run.evaluating:
            return host()
        if self.sd_model is not None and getattr(self.sd_model, "sd_checkpoint_info", None) is not self.checkpoint:
            state.disable("the refiner switched checkpoints")

        def forward(call):  # the deep feature is stored on the way (a hook in the host's forward)
            if call.deep is not None:
                return self.stand_ins.cached(host, x, call.deep), None
            return self.stand_ins.full(host, x, call.store), None

        # A1111's InterruptedException is a BaseException: it passes call_unet's fallback by itself
        return call_unet(lambda: open_call(state, run.keys(["row"] * x.shape[0], x.shape[1:]), x), host, forward)


def remove_live_patches() -> int:
    n = 0
    for patch in list(LIVE_PATCHES):
        patch.remove()
        patch.run.state.close()
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
        self.branch = 0

    def blocker(self) -> Optional[str]:
        if getattr(sys.modules.get("modules.sd_unet"), "current_unet", None) is not None:
            return "an SD Unet (for example TensorRT) replaces the U-Net"
        return None

    def prepare(self, p, depth: int, branch: int) -> None:
        self.branch = branch

    def attach(self, run: SamplerRun) -> None:
        reason = self.blocker()  # someone may have switched since prepare
        if reason:
            run.state.disable(reason)
            return
        self.patch = LdmPatch(self.unet, self.branch, run, sd_model=self.sd_model)
        self.patch.install()

    def detach(self) -> None:
        if self.patch is not None:
            self.patch.remove()
            self.patch = None
