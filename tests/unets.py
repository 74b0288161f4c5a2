"""Small random-weight U-Nets of the real architectures and a core-driven sampler loop."""
import torch

from deepcache_plugin.core import DeepCacheConfig, LdmOps, RunState, call_unet, shared_store, unet_forward
from deepcache_plugin.core.call import open_call
from deepcache_plugin.demo.unet import TINY_SD15, TINY_SDXL, UNetModel


def tiny_unet(kind="sd15", seed=0):
    torch.manual_seed(seed)
    return UNetModel(**(TINY_SD15 if kind == "sd15" else TINY_SDXL)).eval()


def inputs(kind="sd15", batch=2, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, size, size, generator=g)
    t = torch.full((batch,), 500.0)
    c = torch.randn(batch, 7, 24, generator=g)
    y = torch.randn(batch, 20, generator=g) if kind == "sdxl" else None
    return x, t, c, y


class CoreSampler:
    """Euler / Heun over a sigma schedule, every model call going through RunState,
    the way host adapters drive the core. Rows are [cond..., uncond...] with CFG."""

    def __init__(self, unet, config: DeepCacheConfig, depth):
        self.unet, self.config, self.depth = unet, config, depth
        self.calls = []  # (step reported by the sampler, mode)

    def model(self, run, x, sigma, context, step):
        run.begin_evaluation()
        half = x.shape[0] // 2
        keys = [("cond", (half,) + x.shape[1:]), ("uncond", (half,) + x.shape[1:])]
        t = torch.full((x.shape[0],), sigma * 100.0)

        def opened():
            call = open_call(run, keys, x)
            self.calls.append((step, call.mode))
            return call

        def forward(call):
            return unet_forward(LdmOps(self.unet, t, context), x, call.depth, call.branch, deep=call.deep)

        return call_unet(opened, lambda: self.unet(x, t, context), forward)

    def sample(self, x, sigmas, context, heun=False, **run_kw):
        run = RunState(self.config, sigmas, self.depth, shared_store(self.unet).open_run(),
                       mid_step_callback=heun, **run_kw)
        self.plan = run.plan
        try:
            for i in range(len(sigmas) - 1):
                s, s_next = sigmas[i], sigmas[i + 1]
                d = self.model(run, x, s, context, i)
                run.on_callback(i)  # k-diffusion calls back after a step's first evaluation
                x_next = x + (s_next - s) * d
                if heun and s_next > 0:
                    d2 = self.model(run, x_next, s_next, context, i)
                    x_next = x + (s_next - s) * (d + d2) / 2
                x = x_next
        finally:
            self.summary = run.close()
        return x
