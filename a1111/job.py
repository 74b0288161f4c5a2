"""DeepCache for one generation (one process_images call): the infotext, one
cached run per sampling pass (base, hires), messages, and clean-up."""
from __future__ import annotations

from typing import Optional

from ..core import ConfigError, NotAUNetError, RunState, describe_unet, shared_store
from . import infotext
from .clock import SamplerRun, run_schedule, unwrap_sampler, wrap_sampler
from .hosts import host_for
from .log import log, log_once
from .percent import percent_to_sigma, percent_to_timestep
from .settings import Choices

# the run whose CFG denoiser is evaluating now (A1111 runs one generation at a time)
ACTIVE: list = []


def on_cfg_denoiser(params) -> None:
    """Rows of this evaluation's CFG batch, so extra U-Net calls are not cached."""
    for run in ACTIVE:
        if not getattr(run.host, "rows_in_cfg_batch", False):
            continue
        if getattr(params, "denoiser", None) is run.denoiser and getattr(params, "x", None) is not None:
            run.expected_rows = int(params.x.shape[0])


class Job:
    def __init__(self, choices: Choices):
        self.choices = choices
        self.hosts: dict = {}
        self.samplers: list = []
        self.summaries: list = []  # (pass label, RunSummary)
        self._said: set = set()

    # -- hooks --------------------------------------------------------------
    def write_infotext(self, p) -> None:
        c = self.choices
        if not c.enabled:
            return
        p.extra_generation_params[infotext.KEY] = infotext.format_base(c.base)
        if c.hr_enabled and getattr(p, "enable_hr", False):
            p.extra_generation_params[infotext.HR_KEY] = infotext.format_hr(c.hr)

    def before_sampling(self, p) -> None:
        """process_before_every_sampling: idempotent, Forge calls it twice for hires."""
        hires = bool(getattr(p, "is_hr_pass", False))
        cfg = self.choices.for_pass(hires)
        if cfg is None or not cfg.enabled:
            return
        try:
            host = host_for(p)
            reason = host.blocker()
            if reason:
                return self.off(p, reason, hires)
            depth = describe_unet(host.unet).depth
            cfg.check_branch(depth)
        except (ConfigError, NotAUNetError) as e:
            return self.off(p, str(e), hires)
        host.prepare(p, depth, cfg.branch)
        self.hosts[hires] = host
        sampler = p.sampler
        self.samplers.append(sampler)
        wrap_sampler(sampler, lambda kwargs, model: self._open(p, hires, cfg, depth, kwargs, model, sampler),
                     self._close)

    def finish(self) -> None:
        """postprocess (also at the next job start, since postprocess is skipped on errors)."""
        for host in self.hosts.values():
            host.detach()
        for sampler in self.samplers:
            unwrap_sampler(sampler)
        self.samplers.clear()

    # -- runs ---------------------------------------------------------------
    def _open(self, p, hires, cfg, depth, kwargs, model, sampler) -> Optional[SamplerRun]:
        try:
            schedule = run_schedule(kwargs)
            if schedule is None:
                name = getattr(getattr(sampler, "config", None), "name", "this")
                self.off(p, f"the {name} sampler has no fixed step schedule", hires)
                return None
            levels, axis = schedule
            if axis == "sigma":
                start, end = (percent_to_sigma(p.sd_model, v) for v in (cfg.start_percent, cfg.end_percent))
            else:
                start, end = (percent_to_timestep(v) for v in (cfg.start_percent, cfg.end_percent))
            host = self.hosts[hires]
            options = getattr(getattr(sampler, "config", None), "options", None) or {}
            second_order = bool(options.get("second_order", False))
            state = RunState(cfg, levels, depth, shared_store(host.unet).open_run(), start, end,
                             mid_step_callback=second_order)
            run = SamplerRun(state, denoiser=model,
                             label="hires pass" if hires else "base pass", host=host)
            host.attach(run)
            ACTIVE.append(run)
            return run
        except Exception as e:  # never fail a generation because of the cache
            log_once(("open", type(e).__name__, str(e)), f"DeepCache could not start ({e}); sampling without it.", e)
            return None

    def _close(self, run: SamplerRun) -> None:
        if run in ACTIVE:
            ACTIVE.remove(run)
        run.host.detach()
        summary = run.state.close()
        self.summaries.append((run.label, summary))
        log(f"{summary.text()} ({run.label})")

    # -- messages -----------------------------------------------------------
    def off(self, p, reason: str, hires: bool = False) -> None:
        """Say once, in the console, under the image and in the infotext, why DeepCache is off."""
        where = "the hires pass" if hires else "this generation"
        message = f"DeepCache is off for {where}: {reason}"
        if message in self._said:
            return
        self._said.add(message)
        log(message)
        if hasattr(p, "comment"):
            p.comment(message)
        key = infotext.HR_KEY if hires else infotext.KEY
        params = getattr(p, "extra_generation_params", None)
        if isinstance(params, dict) and isinstance(params.get(key), str) and "(off:" not in params[key]:
            params[key] += f" (off: {reason})"
