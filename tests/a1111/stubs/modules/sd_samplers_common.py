from collections import namedtuple


class InterruptedException(BaseException):
    pass


class SamplerData(namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])):
    def total_steps(self, steps):
        return steps * 2 if self.options.get("second_order", False) else steps


def setup_img2img_steps(p, steps=None):
    # A1111 without img2img_fix_steps: a steps-long schedule, the last int(denoise*steps)+1 steps run
    if steps is not None:
        requested = steps
        steps = int(requested / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        return steps, requested - 1
    return p.steps, int(min(p.denoising_strength, 0.999) * p.steps)
