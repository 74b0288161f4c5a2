"""The always-visible DeepCache script of txt2img and img2img, and what it does for one
generation (one process_images call): the image's parameters, one cached run per
sampling pass (base, hires), the messages, and the clean-up.

Every reason DeepCache is off reaches the same three places: the console, the note
under the image, and the image's parameters ("DeepCache: ... (off: reason)").
"""
from __future__ import annotations

import logging
import sys
from typing import Optional

from modules import scripts

from ..core import ConfigError, NotAUNetError, describe_unet
from . import params
from .a1111_host import A1111Host, remove_live_patches
from .forge_host import ForgeHost
from .sampler_hook import SamplerRun, open_state, steps_by_evaluation, unwrap_sampler, wrap_sampler

PREFIX = "[DeepCache]"
JOB_ATTR = "_deepcache_job"
# the runs whose CFG denoiser is evaluating now (A1111 runs one generation at a time)
ACTIVE: list = []


def log(message: str) -> None:
    """A1111 and Forge show stdout in the console they run in."""
    print(f"{PREFIX} {message}", file=sys.stdout, flush=True)


class _ConsoleHandler(logging.Handler):
    """core's warnings (a failed cached forward) on the same console, once per message."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.said: set = set()

    def emit(self, record):
        message = record.getMessage().removeprefix("DeepCache: ")
        if message not in self.said:
            self.said.add(message)
            log(message)


def _route_core_log() -> None:
    # with a handler of its own, the logger no longer falls back to Python's bare stderr output
    logger = logging.getLogger("DeepCache")
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())


def host_for(p):
    return ForgeHost(p) if hasattr(p.sd_model, "forge_objects") else A1111Host(p)


def on_cfg_denoiser(params_) -> None:
    """Rows of this evaluation's CFG batch, so extra U-Net calls are not cached."""
    for run in ACTIVE:
        if not getattr(run.host, "rows_in_cfg_batch", False):
            continue
        if getattr(params_, "denoiser", None) is run.denoiser and getattr(params_, "x", None) is not None:
            run.expected_rows = int(params_.x.shape[0])


class Job:
    def __init__(self, p, choices: params.Choices):
        self.p = p
        self.choices = choices
        self.hosts: dict = {}
        self.samplers: list = []
        self.summaries: list = []  # (pass label, RunSummary)
        self._said: set = set()

    # -- hooks --------------------------------------------------------------
    def write_infotext(self) -> None:
        """The settings of each pass that caches, in the image's parameters (none at interval 1)."""
        p, c = self.p, self.choices
        if c.enabled and c.base.enabled:
            p.extra_generation_params[params.KEY] = params.infotext(c.base, hires=False)
        if c.for_pass(True) is not None and c.hr.enabled and getattr(p, "enable_hr", False):
            p.extra_generation_params[params.HR_KEY] = params.infotext(c.hr, hires=True)

    def before_sampling(self) -> None:
        """process_before_every_sampling: idempotent, Forge calls it twice for hires."""
        p = self.p
        hires = bool(getattr(p, "is_hr_pass", False))
        cfg = self.choices.for_pass(hires)
        if cfg is None or not cfg.enabled:
            return
        try:
            host = host_for(p)
            reason = host.blocker()
            if reason:
                return self.off(reason, hires)
            depth = describe_unet(host.unet).depth
            cfg.check_branch(depth)
        except (ConfigError, NotAUNetError) as e:
            return self.off(str(e), hires)
        host.prepare(p, depth, cfg.branch)
        self.hosts[hires] = host
        sampler = p.sampler
        self.samplers.append(sampler)
        wrap_sampler(sampler, lambda kwargs, model: self._open(hires, cfg, depth, kwargs, model, sampler),
                     self._close)

    def finish(self) -> None:
        """postprocess (also at the next job start, since postprocess is skipped on errors)."""
        for host in self.hosts.values():
            host.detach()
        for sampler in self.samplers:
            unwrap_sampler(sampler)
        self.samplers.clear()

    # -- runs ---------------------------------------------------------------
    def _open(self, hires, cfg, depth, kwargs, model, sampler) -> Optional[SamplerRun]:
        try:
            host = self.hosts[hires]
            state = open_state(self.p.sd_model, sampler, cfg, depth, host.unet, kwargs)
            if state is None:
                name = getattr(getattr(sampler, "config", None), "name", "this")
                self.off(f"the {name} sampler has no fixed step schedule", hires)
                return None
            run = SamplerRun(state, denoiser=model, label="hires pass" if hires else "base pass", host=host,
                             steps_by_evaluation=steps_by_evaluation(sampler))
            host.attach(run)
            ACTIVE.append(run)
            return run
        except Exception as e:  # never fail a generation because of the cache
            self.off(f"it could not start ({type(e).__name__}: {e})", hires)
            return None

    def _close(self, run: SamplerRun) -> None:
        if run in ACTIVE:
            ACTIVE.remove(run)
        run.host.detach()
        summary = run.state.close()
        self.summaries.append((run.label, summary))
        text = f"{summary.text()} ({run.label})"
        log(text)
        if hasattr(self.p, "comment"):
            self.p.comment(text)
        if summary.disabled_reason:
            self.off(summary.disabled_reason, run.label == "hires pass", say=False)

    # -- messages -----------------------------------------------------------
    def off(self, reason: str, hires: bool = False, say: bool = True) -> None:
        """Why DeepCache is off for a pass: console, note under the image, image's parameters."""
        where = "the hires pass" if hires else "this generation"
        message = f"DeepCache is off for {where}: {reason}"
        if message in self._said:
            return
        self._said.add(message)
        if say:
            say_off(self.p, message)
        note_off(self.p, reason, hires)


def say_off(p, message: str) -> None:
    """The console and the note under the image."""
    log(message)
    if hasattr(p, "comment"):
        p.comment(message)


def note_off(p, reason: str, hires: bool = False) -> None:
    """'(off: reason)' after the pass's settings, or 'off (reason)' where there are none."""
    extra = getattr(p, "extra_generation_params", None)
    if not isinstance(extra, dict):
        return
    key = params.HR_KEY if hires else params.KEY
    entry = extra.get(key)
    if isinstance(entry, str) and entry and "(off:" not in entry and not entry.startswith("off"):
        extra[key] = f"{entry} {params.off_note(reason)}"
    elif entry is None:
        extra[key] = f"off ({reason})"


class DeepCacheScript(scripts.Script):
    sorting_priority = 15

    def title(self):
        return "DeepCache"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        import gradio as gr
        from modules.ui_components import InputAccordion

        controls = {}
        enabled = params.BY_NAME["enabled"]
        with InputAccordion(bool(params.default(enabled)), label=enabled.label,
                            elem_id=self.elem_id(enabled.name)) as controls[enabled.name]:
            gr.Markdown("Skips the deep U-Net blocks on cached steps. Works with ControlNet; the image's "
                        "parameters say when DeepCache was off and why.")
            for row in (("interval", "branch"), ("schedule", "start", "end")):
                with gr.Row():
                    for name in row:
                        controls[name] = params.control(params.BY_NAME[name], elem_id=self.elem_id(name))
            # img2img has no hires pass; the controls stay (hidden) so the arguments line up
            with gr.Row(visible=not is_img2img):
                for p in params.PARAMS:
                    if p.hires:
                        controls[p.name] = params.control(p, elem_id=self.elem_id(p.name))
        components = [controls[name] for name in params.ARG_NAMES]
        self.infotext_fields = [(c, params.paste_value(p)) for c, p in zip(components, params.PARAMS)]
        self.paste_field_names = []
        return components

    def before_process(self, p, *args):
        # postprocess is skipped when a generation fails: undo what a failed one left
        ACTIVE.clear()
        if remove_live_patches():
            log("removed a U-Net patch left by a failed generation")

    def process(self, p, *args):
        setattr(p, JOB_ATTR, None)
        try:
            values = params.values_from_args(args, p)
            if not bool(values["enabled"]):
                return
            choices = params.choices_from_values(values)
        except ConfigError as e:
            say_off(p, f"DeepCache is off for this generation: {e}")
            note_off(p, str(e))
            return
        job = Job(p, choices)
        job.write_infotext()
        setattr(p, JOB_ATTR, job)

    def process_before_every_sampling(self, p, *args, **kwargs):
        job = getattr(p, JOB_ATTR, None)
        if job is not None:
            job.before_sampling()

    def postprocess(self, p, processed, *args):
        job = getattr(p, JOB_ATTR, None)
        if job is not None:
            job.finish()


def _unloaded():
    ACTIVE.clear()
    remove_live_patches()


def register_callbacks() -> None:
    from modules import script_callbacks

    from .tab import make_tab
    _route_core_log()
    name = "deepcache"
    # X/Y/Z axes: now (xyz_grid.py is loaded before extensions, and an API server started
    # with --nowebui builds every script's UI before it runs the before-UI callbacks), and
    # again before the UI is built in case the plot script loads later
    params.register_axes()
    script_callbacks.on_ui_settings(params.register_settings, name=name)
    script_callbacks.on_ui_tabs(lambda: make_tab(DeepCacheScript), name=name)
    script_callbacks.on_before_ui(params.register_axes, name=name)
    script_callbacks.on_cfg_denoiser(on_cfg_denoiser, name=name)
    script_callbacks.on_script_unloaded(_unloaded, name=name)
