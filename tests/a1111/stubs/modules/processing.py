"""process_images with A1111's hook order (processing.py:821-1148): before_process,
process, sampling (process_before_every_sampling right before each sampler call;
before_hr before the hires one), postprocess_batch, postprocess. An exception in
sampling propagates and skips postprocess; an interrupt is swallowed by the sampler."""
import torch
import torch.nn.functional as F

from . import sd_samplers


class Processed:
    def __init__(self, p, images):
        self.images = images
        self.infotext = ", ".join(f"{k}: {v}" for k, v in p.extra_generation_params.items())
        self.comments = "".join(f"{c}\n" for c in p.comments)


class StableDiffusionProcessing:
    def __init__(self, sd_model=None, prompt="", negative_prompt="", steps=8, width=64, height=64, seed=0,
                 cfg_scale=7.0, sampler_name="Euler", batch_size=1, denoising_strength=0.75, **kwargs):
        self.sd_model, self.prompt, self.negative_prompt = sd_model, prompt, negative_prompt
        self.steps, self.width, self.height, self.seed = steps, width, height, seed
        self.cfg_scale, self.sampler_name, self.batch_size = cfg_scale, sampler_name, batch_size
        self.denoising_strength = denoising_strength
        self.extra_generation_params, self.comments, self.override_settings = {}, {}, {}
        self.scripts, self.script_args, self.sampler, self.is_hr_pass = None, [], None, False
        self.__dict__.update(kwargs)

    def comment(self, text):
        self.comments[text] = 1

    def close(self):
        pass

    def _hook_sampling(self, x, cond, uncond):
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(self, x=x, noise=x, c=cond, uc=uncond)


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr = False
    hr_second_pass_steps = 0
    hr_scale = 2.0

    def sample(self, x, cond, uncond):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        self._hook_sampling(x, cond, uncond)
        samples = self.sampler.sample(self, x, cond, uncond)
        if not self.enable_hr:
            return samples
        self.is_hr_pass = True
        samples = F.interpolate(samples, scale_factor=self.hr_scale, mode="nearest")
        noise = torch.randn(samples.shape, generator=torch.Generator().manual_seed(self.seed + 1))
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        if self.scripts is not None:
            self.scripts.before_hr(self)
        self._hook_sampling(samples, cond, uncond)
        samples = self.sampler.sample_img2img(self, samples, noise, cond, uncond,
                                              steps=self.hr_second_pass_steps or self.steps)
        self.is_hr_pass = False
        return samples


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_latent = None

    def sample(self, x, cond, uncond):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        self._hook_sampling(x, cond, uncond)
        return self.sampler.sample_img2img(self, self.init_latent, x, cond, uncond)


def process_images(p):
    with torch.no_grad():  # as A1111's process_images_inner
        return _process_images(p)


def _process_images(p):
    if p.scripts is not None:
        p.scripts.before_process(p)
        p.scripts.process(p)
    g = torch.Generator().manual_seed(p.seed)
    x = torch.randn(p.batch_size, 4, p.height // 8, p.width // 8, generator=g)
    cond, uncond = p.sd_model.get_learned_conditioning(p.prompt, p.negative_prompt, p.batch_size)
    samples = p.sample(x, cond, uncond)
    if p.scripts is not None:
        p.scripts.postprocess_batch(p, images=samples, batch_number=0)
    processed = Processed(p, samples)
    if p.scripts is not None:
        p.scripts.postprocess(p, processed)
    return processed
