from collections import defaultdict

callbacks = defaultdict(list)


def _adder(kind):
    def add(fn, *, name=None):
        callbacks[kind].append(fn)
    return add


for _kind in ("ui_settings", "ui_tabs", "before_ui", "cfg_denoiser", "cfg_denoised", "script_unloaded",
              "model_loaded", "infotext_pasted"):
    globals()["on_" + _kind] = _adder(_kind)


def clear_callbacks():
    callbacks.clear()


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond,
                 denoiser=None):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser


def cfg_denoiser_callback(params):
    for fn in callbacks["cfg_denoiser"]:
        fn(params)
