"""What each DeepCache setting looks like to a user, in every host: one table.

The ComfyUI node's inputs and the A1111/Forge controls, Settings entries and image
parameters are all built from these rows; the defaults are DeepCacheConfig's.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from .config import SCHEDULES, DeepCacheConfig


@dataclass(frozen=True)
class Setting:
    name: str            # the DeepCacheConfig field
    label: str
    help: str
    lo: Optional[float] = None  # range of a number; choices of a choice
    hi: Optional[float] = None
    step: Optional[float] = None
    choices: tuple = ()
    ui_hi: Optional[float] = None  # a slider's end where the valid range is far larger

    @property
    def default(self):
        return {f.name: f.default for f in fields(DeepCacheConfig)}[self.name]

    @property
    def is_int(self) -> bool:
        return self.step == 1


SETTINGS = {s.name: s for s in (
    Setting("interval", "Cache interval",
            "N: one full U-Net step, then N-1 cached steps. 1 = off (the exact image of the unpatched model); "
            "3 is about x2-2.5 faster; higher is faster with more change to the image.", 1, 1000, 1, ui_hi=20),
    Setting("branch", "Cache branch",
            "Skip branch b: input blocks 0..b and output blocks L-1-b..L-1 run on cached steps. 0 = fastest, "
            "higher = closer to the full image. SD1.x/SD2.x have 0..11, SDXL 0..8.", 0, 11, 1),
    Setting("start_percent", "Start percent",
            "Where in the denoising process caching starts (0 = first step). Before it every step runs the "
            "whole U-Net. Same meaning as in ComfyUI's ControlNet Apply Advanced.", 0.0, 1.0, 0.01),
    Setting("end_percent", "End percent",
            "Where in the denoising process caching ends (1 = last step). After it every step runs the "
            "whole U-Net.", 0.0, 1.0, 0.01),
    Setting("schedule", "Schedule",
            "uniform: refresh every N-th step. non-uniform: the paper's schedule, with refresh steps denser "
            "around the center (the paper reports it better at large intervals).", choices=SCHEDULES),
    Setting("center", "Center",
            "non-uniform only: where refresh steps are densest, as a fraction of the steps (the paper's c=15 "
            "of 50 steps = 0.3).", 0.0, 1.0, 0.01),
    Setting("power", "Power",
            "non-uniform only: how strongly refresh steps gather around the center (the paper's p = 1.4).",
            0.5, 4.0, 0.05),
)}
