"""DeepCache's settings in A1111/Forge: one table, and everything built from it.

Each row says what one setting looks like everywhere: its default (Settings ->
DeepCache), its control (the txt2img/img2img accordion, the DeepCache tab), its token in
the image's parameters (written and pasted back), and its X/Y/Z axis. The order of the
rows is the order of the script's arguments (ui() values, the API's alwayson_scripts).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from ..core import ConfigError, DeepCacheConfig
from ..core.settings import SETTINGS, Setting

SECTION = ("deepcache", "DeepCache")
KEY, HR_KEY = "DeepCache", "DeepCache hires"  # entries in the image's parameters
AXIS_PREFIX = "[DeepCache] "


@dataclass(frozen=True)
class Param:
    name: str                  # script argument and override attribute p.deepcache_<name>
    setting: str               # its key in Settings -> DeepCache
    core: Optional[Setting] = None  # the core row it shows (range, default, help); None: a checkbox
    label_: Optional[str] = None    # where it differs from the core row's
    token: Optional[str] = None  # "interval 3" in the image's parameters; None: not written
    hires: bool = False        # a hires-pass setting ("DeepCache hires" entry, txt2img only)
    axis: Optional[str] = None  # X/Y/Z axis label (after the prefix)

    @property
    def label(self) -> str:
        return self.label_ or self.core.label

    @property
    def default(self):
        return False if self.core is None else self.core.default

    @property
    def choices(self) -> tuple:
        return () if self.core is None else self.core.choices

    @property
    def step(self):
        return None if self.core is None else self.core.step

    @property
    def lo(self):
        return self.core.lo

    @property
    def hi(self):
        return self.core.ui_hi or self.core.hi

    @property
    def is_int(self) -> bool:
        return self.core is not None and self.core.is_int

    @property
    def setting_label(self) -> str:
        return f"{self.label}: {self.core.help}" if self.core else self.label

    def fmt(self, value) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)


S = SETTINGS
PARAMS = (
    Param("enabled", "deepcache_enable", label_="DeepCache", axis="Enabled"),
    Param("interval", "deepcache_interval", S["interval"], token="interval", axis="Cache interval"),
    Param("branch", "deepcache_branch", S["branch"], token="branch", axis="Cache branch"),
    Param("schedule", "deepcache_schedule", S["schedule"], token="schedule"),
    Param("start", "deepcache_start", S["start_percent"], token="start"),
    Param("end", "deepcache_end", S["end_percent"], token="end"),
    Param("hr_enabled", "deepcache_hr_enable", label_="Also on the hires pass", hires=True),
    Param("hr_interval", "deepcache_hr_interval", S["interval"], "Hires cache interval", token="interval", hires=True),
    Param("hr_start", "deepcache_hr_start", S["start_percent"], "Hires start percent", token="start", hires=True),
)
BY_NAME = {p.name: p for p in PARAMS}
ARG_NAMES = tuple(p.name for p in PARAMS)


def default(param: Param):
    """The Settings value of a parameter, or its built-in default outside the web UI."""
    try:
        from modules import shared
        value = getattr(shared.opts, param.setting)
    except Exception:
        value = None
    return param.default if value is None else value


# -- what the user chose --------------------------------------------------------------------
@dataclass(frozen=True)
class Choices:
    """What the user chose for one generation, both passes."""
    enabled: bool
    base: DeepCacheConfig
    hr_enabled: bool
    hr: DeepCacheConfig

    def for_pass(self, hires: bool) -> Optional[DeepCacheConfig]:
        """The config of this pass, or None where DeepCache is off for it."""
        if not self.enabled or (hires and not self.hr_enabled):
            return None
        return self.hr if hires else self.base


def _value(param: Param, value):
    if param.is_int:  # gradio sliders hand back floats (3.0); a fraction is a user error
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{param.label.lower()} must be a whole number, got {value!r}")
    if param.step is not None:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{param.label.lower()} must be a number, got {value!r}") from None
    if param.choices:
        return str(value)
    return bool(value)


def values_from_args(args: Sequence, p=None) -> dict:
    """The script arguments by name, with X/Y/Z overrides found on p (p.deepcache_<name>)."""
    if len(args) < len(PARAMS):
        raise ConfigError(f"DeepCache expected {len(PARAMS)} script arguments, got {len(args)}")
    v = dict(zip(ARG_NAMES, args))
    for name in ARG_NAMES:
        override = getattr(p, f"deepcache_{name}", None) if p is not None else None
        if override is not None:
            v[name] = override
    return v


def choices_from_values(v: dict) -> Choices:
    """Raises ConfigError with a clear message on bad values."""
    c = {p.name: _value(p, v[p.name]) for p in PARAMS}
    base = DeepCacheConfig(interval=c["interval"], branch=c["branch"], start_percent=c["start"],
                           end_percent=c["end"], schedule=c["schedule"])
    try:  # the hires pass keeps branch, schedule and end percent of the base pass
        hr = base.with_(interval=c["hr_interval"], start_percent=c["hr_start"])
    except ConfigError as e:
        raise ConfigError(f"hires pass: {e}") from None
    return Choices(enabled=c["enabled"], base=base, hr_enabled=c["hr_enabled"], hr=hr)


# -- the image's parameters -----------------------------------------------------------------
def infotext(cfg: DeepCacheConfig, hires: bool) -> str:
    """'interval 3, branch 0, schedule uniform, start 0.00, end 1.00' (hires: its own rows)."""
    rows = [p for p in PARAMS if p.token and p.hires == hires]
    return ", ".join(f"{p.token} {p.fmt(getattr(cfg, p.core.name))}" for p in rows)  # core rows name the field


def off_note(reason: str) -> str:
    return f"(off: {reason})"


def parse_infotext(text, hires: bool) -> dict:
    """{name: value} of the parts of one entry that parse; '(off: ...)' notes are ignored."""
    rows = {p.token: p for p in PARAMS if p.token and p.hires == hires}
    out = {}
    for part in re.sub(r"\([^)]*\)", "", str(text)).split(","):
        token, _, raw = part.strip().partition(" ")
        param = rows.get(token)
        if param is None:
            continue
        try:
            out[param.name] = int(raw) if param.is_int else float(raw) if param.step else raw.strip()
        except ValueError:
            pass
    return out


def paste_value(param: Param):
    """A paste-field function: pasted parameters without a DeepCache entry turn it off, a
    missing part of a present entry leaves that control as it is (None)."""
    key = HR_KEY if param.hires else KEY

    def read(params: dict):
        entry = params.get(key)
        if param.token is None:  # the two checkboxes: on when their entry is there and not off
            return entry is not None and not str(entry).startswith("off")
        return None if entry is None else parse_infotext(entry, param.hires).get(param.name)
    return read


# -- controls and settings ------------------------------------------------------------------
def control(param: Param, value=None, **kwargs):
    """The gradio control of a parameter (components common to gradio 3.41 and 4.40)."""
    import gradio as gr
    value = default(param) if value is None else value
    if param.choices:
        return gr.Radio(list(param.choices), value=value, label=param.label, **kwargs)
    if param.step is not None:
        return gr.Slider(param.lo, param.hi, step=param.step, value=value, label=param.label, **kwargs)
    return gr.Checkbox(value=bool(value), label=param.label, **kwargs)


def register_settings() -> None:
    """Settings -> DeepCache: the defaults of every control."""
    import gradio as gr
    from modules import shared
    labels = {"enabled": "Enable DeepCache by default", "hr_enabled": "Also cache the hires-fix pass by default"}
    for p in PARAMS:
        if p.choices:
            component, args = gr.Radio, {"choices": list(p.choices)}
        elif p.step is not None:
            component, args = gr.Slider, {"minimum": p.lo, "maximum": p.hi, "step": p.step}
        else:
            component, args = None, None  # A1111 picks a checkbox
        label = labels.get(p.name, p.setting_label)
        shared.opts.add_option(p.setting, shared.OptionInfo(p.default, label, component, args, section=SECTION))


# -- X/Y/Z plot -----------------------------------------------------------------------------
def _axis_apply(param: Param):
    def apply(p, x, xs):
        value = str(x).strip().lower() in ("true", "1", "yes", "on") if param.name == "enabled" else x
        setattr(p, f"deepcache_{param.name}", value)
        if param.name != "enabled":  # a settings axis compares caching settings: caching is on
            p.deepcache_enabled = True
    return apply


def register_axes() -> bool:
    """Add the axes to the built-in X/Y/Z plot script, once; False if it is not loaded (yet).
    They set attributes on the copy of p that one grid cell processes: nothing outlives it."""
    try:
        from modules import scripts
        found = [s for s in scripts.scripts_data if s.script_class.__module__ == "xyz_grid.py"]
    except Exception:
        return False
    if not found:
        return False
    xyz = found[0].module
    if any(getattr(o, "label", "").startswith(AXIS_PREFIX) for o in xyz.axis_options):
        return True
    for p in PARAMS:
        if p.axis:
            kind = str if p.name == "enabled" else int
            choices = (lambda: ["True", "False"]) if p.name == "enabled" else None
            xyz.axis_options.append(xyz.AxisOption(AXIS_PREFIX + p.axis, kind, _axis_apply(p), choices=choices))
    return True
