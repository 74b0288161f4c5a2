"""The side-by-side speed test of the DeepCache tab: the same txt2img job, same
seed, on the loaded model, without and with DeepCache, timed."""
from __future__ import annotations

import contextlib
import time

from .settings import ARG_NAMES


def _runner_with(script_cls, args):
    """A ScriptRunner holding only a fresh DeepCache script, so the test runs
    through the same hooks as a normal generation and nothing else."""
    from modules import scripts
    runner = scripts.ScriptRunner()
    script = script_cls()
    script.args_from, script.args_to = 0, len(args)
    script.is_txt2img, script.is_img2img = True, False
    script.filename = getattr(script, "filename", None) or __file__
    runner.scripts.append(script)
    runner.alwayson_scripts.append(script)
    return runner


def _generate(script_cls, args, prompt, steps, size, seed, sampler_name):
    from modules import processing, shared
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model, prompt=prompt, negative_prompt="", steps=int(steps), width=int(size),
        height=int(size), seed=int(seed), cfg_scale=7.0, sampler_name=sampler_name,
        do_not_save_samples=True, do_not_save_grid=True)
    p.scripts = _runner_with(script_cls, args)
    p.script_args = list(args)
    start = time.perf_counter()
    try:
        processed = processing.process_images(p)
    finally:
        p.close()
    return processed, time.perf_counter() - start


def _lock():
    try:
        from modules.call_queue import queue_lock
        return queue_lock
    except Exception:
        return contextlib.nullcontext()


def run(script_cls, prompt, steps, size, seed, sampler_name, interval, branch, schedule, start, end):
    """(baseline image, DeepCache image, markdown report)."""
    args = dict(zip(ARG_NAMES, (True, interval, branch, schedule, start, end, False, 1, 0.0)))
    on = [args[k] for k in ARG_NAMES]
    off = [False] + on[1:]
    with _lock():
        # one short warm-up so neither timed run pays for loading or kernel selection
        _generate(script_cls, off, prompt, 1, size, seed, sampler_name)
        base, t_base = _generate(script_cls, off, prompt, steps, size, seed, sampler_name)
        cached, t_cached = _generate(script_cls, on, prompt, steps, size, seed, sampler_name)
    notes = [c for c in (cached.comments or "").splitlines() if "DeepCache" in c]
    report = [f"Baseline: **{t_base:.2f} s**; DeepCache (interval {int(interval)}, branch {int(branch)}, "
              f"{schedule}): **{t_cached:.2f} s**; measured speed-up of the whole generation "
              f"**×{t_base / t_cached:.2f}** ({int(steps)} steps, {int(size)}×{int(size)}, seed {int(seed)}, "
              f"{sampler_name})."] + notes
    return base.images[0], cached.images[0], "\n\n".join(report)
