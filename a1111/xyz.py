"""X/Y/Z plot axes. They set attributes on the copy of p that one grid cell
processes, so nothing outlives the cell (unlike writing shared.opts)."""
from __future__ import annotations

from .settings import OVERRIDE_ATTRS

PREFIX = "[DeepCache] "


def _setter(name, convert, enable=False):
    def apply(p, x, xs):
        setattr(p, OVERRIDE_ATTRS[name], convert(x))
        if enable:  # an interval/branch axis compares caching settings: caching is on
            setattr(p, OVERRIDE_ATTRS["enabled"], True)
    return apply


def _bool(x) -> bool:
    return str(x).strip().lower() in ("true", "1", "yes", "on")


def register_axes() -> bool:
    """Add the axes to the built-in X/Y/Z plot script, once; False if it is absent."""
    from modules import scripts
    found = [s for s in scripts.scripts_data if s.script_class.__module__ == "xyz_grid.py"]
    if not found:
        return False
    xyz = found[0].module
    if any(getattr(o, "label", "").startswith(PREFIX) for o in xyz.axis_options):
        return True
    xyz.axis_options.extend([
        xyz.AxisOption(PREFIX + "Enabled", str, _setter("enabled", _bool), choices=lambda: ["True", "False"]),
        xyz.AxisOption(PREFIX + "Cache interval", int, _setter("interval", int, enable=True)),
        xyz.AxisOption(PREFIX + "Cache branch", int, _setter("branch", int, enable=True)),
    ])
    return True
