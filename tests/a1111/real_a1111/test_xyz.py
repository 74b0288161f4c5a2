"""The X/Y/Z plot over DeepCache's axes through the API (script_name "x/y/z plot"), in both
server modes: --nowebui (the API builds the scripts' UI itself) and with the gradio UI.

The axis index is what /sdapi/v1/script-info offers in the X type dropdown, as an API user finds it.
"""
import numpy as np
import pytest
from a1111_server import skip_reason
from server_process import HTTPError

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

ENABLED, INTERVAL, BRANCH = "[DeepCache] Enabled", "[DeepCache] Cache interval", "[DeepCache] Cache branch"


def axis_choices(server) -> list[str]:
    info = server.request("/sdapi/v1/script-info")
    xyz = [s for s in info if s["name"] == "x/y/z plot" and not s["is_img2img"]]
    assert xyz, f"no x/y/z plot script in script-info: {[s['name'] for s in info]}"
    return xyz[0]["args"][0]["choices"]


def grid(server, x, xs, y, ys):
    """A 2x2 grid without z; returns (result, {(x value, y value): cell image})."""
    choices = axis_choices(server)
    missing = [a for a in (x, y) if a not in choices]
    # where the axes would be if they were offered (appended after the built-in ones)
    index = {a: choices.index(a) if a in choices else len(choices) + [ENABLED, INTERVAL, BRANCH].index(a)
             for a in (x, y)}

    def values(axis, vals):
        text = ",".join(str(v) for v in vals)
        return (text, [str(v) for v in vals]) if axis == ENABLED else (text, [])

    x_text, x_drop = values(x, xs)
    y_text, y_drop = values(y, ys)
    args = [index[x], x_text, x_drop, index[y], y_text, y_drop, 0, "", [],
            True, True, False, False, False, False, False, 0, False]
    # draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x/y/z, margin, csv_mode
    try:
        r = server.txt2img(script_name="x/y/z plot", script_args=args)
    except HTTPError as e:
        msg = f"x/y/z plot over {x} x {y} failed with HTTP {e.status}"
        if missing:
            msg += f"; script-info does not offer {missing} (its last axes: {choices[-5:]})"
        pytest.fail(f"{msg}\n{e}")
    assert not missing, f"script-info does not offer {missing}, yet the grid ran"
    cells = r.images[1:]  # [grid, cells in x-fastest order] (include_lone_images, no sub-grids)
    assert len(cells) == len(xs) * len(ys), f"{len(r.images)} images"
    return r, {(xv, yv): cells[ix + iy * len(xs)] for iy, yv in enumerate(ys) for ix, xv in enumerate(xs)}


def check_nothing_left_changed(server, before):
    after = server.txt2img()
    assert np.array_equal(after.image, before.image), "a plain generation after the grid is not the same"
    assert "DeepCache: " not in after.infotext, after.infotext


def test_xyz_interval_and_branch_api_only(api_server):
    before = api_server.plain()
    r, cells = grid(api_server, INTERVAL, [1, 3], BRANCH, [0, 1])
    for branch in (0, 1):
        assert np.array_equal(cells[(1, branch)], before.image), f"interval-1 cell (branch {branch}) != plain"
        assert not np.array_equal(cells[(3, branch)], before.image), f"interval-3 cell (branch {branch}) uncached"
    assert not np.array_equal(cells[(3, 0)], cells[(3, 1)]), "the branch axis changed nothing"
    assert len([s for s in r.summaries() if s[1] > 0]) == 2, r.log[-3000:]
    check_nothing_left_changed(api_server, before)


def test_xyz_interval_and_enabled_with_ui(ui_server):
    before = ui_server.plain()
    r, cells = grid(ui_server, INTERVAL, [1, 3], ENABLED, ["False", "True"])
    # the Enabled axis is applied after the interval axis: False turns the cell off
    for key in ((1, "False"), (3, "False"), (1, "True")):
        assert np.array_equal(cells[key], before.image), f"cell {key} != plain"
    assert not np.array_equal(cells[(3, "True")], before.image), "interval 3, enabled: uncached"
    assert len([s for s in r.summaries() if s[1] > 0]) == 1, r.log[-3000:]
    check_nothing_left_changed(ui_server, before)
