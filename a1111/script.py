"""The always-visible DeepCache script of txt2img and img2img."""
from __future__ import annotations

from modules import scripts

from ..core import ConfigError
from . import ui
from .hosts import remove_live_patches
from .job import ACTIVE, Job
from .log import log
from .settings import choices_from_args

JOB_ATTR = "_deepcache_job"


class DeepCacheScript(scripts.Script):
    sorting_priority = 15

    def title(self):
        return "DeepCache"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return ui.build(self, is_img2img)

    def before_process(self, p, *args):
        # postprocess is skipped when a generation fails: undo what a failed one left
        ACTIVE.clear()
        if remove_live_patches():
            log("removed a U-Net patch left by a failed generation")

    def process(self, p, *args):
        setattr(p, JOB_ATTR, None)
        try:
            choices = choices_from_args(args, p)
        except ConfigError as e:
            message = f"DeepCache is off for this generation: {e}"
            log(message)
            if hasattr(p, "comment"):
                p.comment(message)
            return
        if not choices.enabled:
            return
        job = Job(choices)
        job.write_infotext(p)
        setattr(p, JOB_ATTR, job)

    def process_before_every_sampling(self, p, *args, **kwargs):
        job = getattr(p, JOB_ATTR, None)
        if job is not None:
            job.before_sampling(p)

    def postprocess(self, p, processed, *args):
        job = getattr(p, JOB_ATTR, None)
        if job is not None:
            job.finish()
