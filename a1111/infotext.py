"""The settings as written into the image's parameters, and read back on paste.

"DeepCache: interval 3, branch 0, uniform, 0.00-1.00" and, when the hires pass
is cached too, "DeepCache hires: interval 3, start 0.00". Anything in
parentheses (why DeepCache was off) is ignored when reading.
"""
from __future__ import annotations

import re
from typing import Optional

from ..core.config import SCHEDULES

KEY = "DeepCache"
HR_KEY = "DeepCache hires"


def format_base(cfg, note: Optional[str] = None) -> str:
    s = (f"interval {cfg.interval}, branch {cfg.branch}, {cfg.schedule}, "
         f"{cfg.start_percent:.2f}-{cfg.end_percent:.2f}")
    return f"{s} (off: {note})" if note else s


def format_hr(cfg) -> str:
    return f"interval {cfg.interval}, start {cfg.start_percent:.2f}"


def _strip(text) -> str:
    return re.sub(r"\([^)]*\)", "", str(text)).strip()


def parse_base(text) -> dict:
    """{'interval', 'branch', 'schedule', 'start', 'end'}; only the parts that parse."""
    out = {}
    for part in (s.strip() for s in _strip(text).split(",")):
        if m := re.fullmatch(r"interval (\d+)", part):
            out["interval"] = int(m.group(1))
        elif m := re.fullmatch(r"branch (\d+)", part):
            out["branch"] = int(m.group(1))
        elif part in SCHEDULES:
            out["schedule"] = part
        elif m := re.fullmatch(r"([\d.]+)-([\d.]+)", part):
            out["start"], out["end"] = float(m.group(1)), float(m.group(2))
    return out


def parse_hr(text) -> dict:
    out = {}
    for part in (s.strip() for s in _strip(text).split(",")):
        if m := re.fullmatch(r"interval (\d+)", part):
            out["hr_interval"] = int(m.group(1))
        elif m := re.fullmatch(r"start ([\d.]+)", part):
            out["hr_start"] = float(m.group(1))
    return out


def paste_value(name: str):
    """A paste-field function for the UI value name (see settings.ARG_NAMES).

    Pasted parameters without DeepCache turn it off; a missing part of a present
    entry leaves that control as it is (None)."""
    def read(params: dict):
        if name == "enabled":
            return KEY in params
        if name == "hr_enabled":
            return HR_KEY in params
        if name.startswith("hr_"):
            return parse_hr(params[HR_KEY]).get(name) if HR_KEY in params else None
        return parse_base(params[KEY]).get(name) if KEY in params else None
    return read
