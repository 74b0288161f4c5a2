"""Samplers with A1111's structure: Sampler.func called through launch_sampling with
the CFG denoiser as model and callback_state as callback; k-diffusion functions
call back after the first model evaluation of each step."""
import inspect

import torch

from . import shared
from .script_callbacks import CFGDenoiserParams, cfg_denoiser_callback
from .sd_samplers_common import InterruptedException, SamplerData, setup_img2img_steps


def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = (x - denoised) / sigmas[i]
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = (x_2 - denoised_2) / sigmas[i + 1]
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpm_adaptive(model, x, sigma_min, sigma_max, extra_args=None, callback=None, disable=None):
    return sample_euler(model, x, torch.linspace(float(sigma_max), 0.0, 5), extra_args, callback)


def ddim(model, x, timesteps, extra_args=None, callback=None, disable=None):
    acp = model.inner_model.inner_model.alphas_cumprod
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        t, t_prev = int(timesteps[index]), int(timesteps[index - 1])
        e_t = model(x, float(t) * s_in, **extra_args)
        a_t, a_prev = acp[t], acp[t_prev]
        pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * e_t
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


def unipc(model, x, timesteps, extra_args=None, callback=None, disable=None):
    """One evaluation per timestep, and the callback for step i only after step i+1's
    evaluation (A1111's UniPC corrector); a plain Euler-like update stands in for its math."""
    acp = model.inner_model.inner_model.alphas_cumprod
    s_in = x.new_ones([x.shape[0]])
    ts = [int(t) for t in reversed(timesteps)]
    for i, t in enumerate(ts):
        e_t = model(x, float(t) * s_in, **extra_args)
        if i > 0 and callback is not None:
            callback({"x": x, "i": i - 1, "sigma": 0, "sigma_hat": 0, "denoised": x})
        a_t, a_prev = acp[t], acp[ts[i + 1]] if i + 1 < len(ts) else acp.new_tensor(1.0)
        pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * e_t
    if callback is not None:
        callback({"x": x, "i": len(ts) - 1, "sigma": 0, "sigma_hat": 0, "denoised": x})
    return x


class CompVisDenoiser:
    """eps-prediction k-diffusion wrapper: sigma -> t, c_in scaling."""

    def __init__(self, sd_model):
        self.inner_model = sd_model
        self.sigmas = ((1 - sd_model.alphas_cumprod) / sd_model.alphas_cumprod).sqrt()

    def sigma_to_t(self, sigma):
        return (sigma[:, None].log() - self.sigmas.log()[None]).abs().argmin(dim=1).float()

    def __call__(self, x, sigma, cond):
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        eps = self.inner_model.apply_model(x * c_in[:, None, None, None], self.sigma_to_t(sigma), cond)
        return x - eps * sigma[:, None, None, None]


class CompVisTimestepsDenoiser:
    def __init__(self, sd_model):
        self.inner_model = sd_model

    def __call__(self, x, t, cond):
        return self.inner_model.apply_model(x, t, cond)


class CFGDenoiser(torch.nn.Module):
    """Cond rows first, then uncond rows; one U-Net call when the token lengths match
    (and batch_cond_uncond), else separate calls; skip_early_cond drops uncond rows."""

    def __init__(self, sampler, timesteps=False):
        super().__init__()
        self.sampler = sampler
        self.timesteps = timesteps
        self.step = 0
        self.total_steps = 1
        self.inner_model = sampler.model_wrap

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond=0.0, image_cond=None):
        if shared.state.interrupted:
            raise InterruptedException
        b = x.shape[0]
        x_in, sigma_in = torch.cat([x, x]), torch.cat([sigma, sigma])
        params = CFGDenoiserParams(x_in, None, sigma_in, shared.state.sampling_step, shared.state.sampling_steps,
                                   cond, uncond, self)
        cfg_denoiser_callback(params)
        skip_uncond = self.step / self.total_steps < shared.opts.skip_early_cond
        if skip_uncond:
            x_in, sigma_in = x_in[:-b], sigma_in[:-b]
        if skip_uncond:
            x_out = self.inner_model(x_in, sigma_in, cond)
            x_out = torch.cat([x_out, x_out])
        elif shared.opts.batch_cond_uncond and cond.shape[1] == uncond.shape[1]:
            x_out = self.inner_model(x_in, sigma_in, torch.cat([cond, uncond]))
        else:
            x_out = torch.zeros_like(x_in)
            x_out[:b] = self.inner_model(x_in[:b], sigma_in[:b], cond)
            x_out[b:] = self.inner_model(x_in[b:], sigma_in[b:], uncond)
        self.step += 1
        out_cond, out_uncond = x_out[:b], x_out[b:]
        return out_uncond + (out_cond - out_uncond) * cond_scale


class Sampler:
    def __init__(self, func, sd_model, timesteps=False):
        self.func = func
        # A1111 keeps the function itself for timestep samplers, its name for k-diffusion ones
        self.funcname = func if timesteps else func.__name__
        self.timesteps = timesteps
        self.model_wrap = (CompVisTimestepsDenoiser if timesteps else CompVisDenoiser)(sd_model)
        self.model_wrap_cfg = CFGDenoiser(self, timesteps)
        self.config = None

    def callback_state(self, d):
        shared.state.sampling_step = d["i"]  # set after the step's first evaluation, as in A1111
        if shared.state.interrupt_at is not None and d["i"] >= shared.state.interrupt_at:
            shared.state.interrupted = True

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def get_sigmas(self, p, steps):
        if self.timesteps:
            return torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)
        sig = self.model_wrap.sigmas
        rho, lo, hi = 7.0, float(sig[0]), float(sig[-1])
        ramp = torch.linspace(0, 1, steps)
        sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        return torch.cat([sigmas, sigmas.new_zeros([1])])

    def _kwargs(self, schedule):
        params = inspect.signature(self.func).parameters
        kw = {}
        if "sigmas" in params:
            kw["sigmas"] = schedule
        if "timesteps" in params:
            kw["timesteps"] = schedule
        if "sigma_min" in params:
            kw["sigma_min"], kw["sigma_max"] = schedule[-2], schedule[0]
        return kw

    def _run(self, p, x, cond, uncond, schedule, steps):
        self.last_latent = x
        extra = {"cond": cond, "uncond": uncond, "cond_scale": p.cfg_scale, "s_min_uncond": 0.0}
        kw = self._kwargs(schedule)
        return self.launch_sampling(steps, lambda: self.func(self.model_wrap_cfg, x, extra_args=extra,
                                                             disable=False, callback=self.callback_state, **kw))

    def sample(self, p, x, cond, uncond, steps=None):
        steps = steps or p.steps
        schedule = self.get_sigmas(p, steps)
        if not self.timesteps:
            x = x * schedule[0]
        return self._run(p, x, cond, uncond, schedule, steps)

    def sample_img2img(self, p, x, noise, cond, uncond, steps=None):
        steps, t_enc = setup_img2img_steps(p, steps)
        schedule = self.get_sigmas(p, steps)
        if self.timesteps:
            sched = schedule[:t_enc]
            acp = p.sd_model.alphas_cumprod[int(schedule[t_enc])]
            xi = x * acp.sqrt() + noise * (1 - acp).sqrt()
        else:
            sched = schedule[steps - t_enc - 1:]
            xi = x + noise * sched[0]
        return self._run(p, xi, cond, uncond, sched, t_enc + 1)


SAMPLERS = {
    "Euler": (sample_euler, False, {}),
    "Heun": (sample_heun, False, {"second_order": True}),
    "DPM adaptive": (sample_dpm_adaptive, False, {}),
    "DDIM": (ddim, True, {}),
    "UniPC": (unipc, True, {}),
}


def create_sampler(name, sd_model):
    func, timesteps, options = SAMPLERS[name]
    sampler = Sampler(func, sd_model, timesteps)
    sampler.config = SamplerData(name, None, [], options)
    return sampler
