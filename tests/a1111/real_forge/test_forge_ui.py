"""DeepCache in Forge's gradio UI (launch.py --api, with the UI), driven in headless Chromium.

Screenshots go to DEEPCACHE_FIGURES (default: pytest's tmp_path).
"""
import re
import time
import urllib.request

import numpy as np
import pytest
from forge_server import BASE, browser_page, skip_reason
from headless_chromium import browser_skip_reason
from pixels import decode_image_bytes
from sd_webui import deepcache_args, deepcache_settings

reason = skip_reason() or browser_skip_reason()
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")


def our_errors(page):
    """Console errors and failed loads, less the host's own offline ones (it links fonts and
    images on the internet)."""
    # gradio's event stream (queue/data) is aborted by design when an event ends
    failed = [f for f in page.failed if "127.0.0.1" in f and not ("/queue/data" in f and "ERR_ABORTED" in f)]
    errors = [e for e in page.errors if "ERR_NAME_NOT_RESOLVED" not in e and "ERR_INTERNET_DISCONNECTED" not in e
              and not (e.startswith("Failed to load resource") and not failed)]
    return failed + errors


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def accordion(page, tab):
    """The DeepCache accordion of a tab ("txt2img"/"img2img"), found by its label as a user finds it."""
    label = page.locator("button.label-wrap > span", has_text=re.compile(r"^\s*DeepCache\s*$"))
    acc = page.locator(f"#tab_{tab} .input-accordion").filter(has=label)
    acc.first.wait_for(state="visible", timeout=60_000)
    assert acc.count() == 1, f"{acc.count()} DeepCache accordions in {tab}"
    return acc


def header_checkbox(page, acc):
    """The checkbox in the accordion's header (InputAccordion's '<id>-visible-checkbox')."""
    return page.locator(f"#{acc.get_attribute('id')}-visible-checkbox")


def control(acc, label, kind="slider"):
    """A control of the accordion by the start of its label ("Cache interval", not "Hires cache interval")."""
    return acc.locator(f".gradio-{kind}").filter(has_text=re.compile(r"^\s*" + re.escape(label)))


def set_control_number(acc, label, value):
    box = control(acc, label).locator("input[type=number]")
    box.fill(str(value))
    box.press("Enter")


BASE_LABELS = ("Cache interval", "Cache branch", "Start percent", "End percent")
HIRES_LABELS = ("Hires cache interval", "Hires start percent")


def test_accordion_in_txt2img_and_img2img(ui_server, figures):
    with browser_page(ui_server) as page:
        acc = accordion(page, "txt2img")
        checkbox = header_checkbox(page, acc)
        assert not checkbox.is_checked(), "DeepCache is on by default"
        acc.locator("button.label-wrap").click()  # opening the accordion turns DeepCache on
        page.wait_for_timeout(500)
        assert checkbox.is_checked(), "opening the accordion did not tick its checkbox"
        for label in BASE_LABELS + HIRES_LABELS:
            assert control(acc, label).count() == 1 and control(acc, label).is_visible(), label
        assert control(acc, "Schedule", "radio").is_visible()
        assert control(acc, "Also on the hires pass", "checkbox").is_visible()
        assert control(acc, "Cache interval").locator("input[type=number]").input_value() == "3"
        acc.scroll_into_view_if_needed()
        page.screenshot(path=str(figures / "forge-txt2img-deepcache.png"), full_page=True)

        page.locator("#tab_img2img-button").click()
        acc2 = accordion(page, "img2img")
        acc2.locator("button.label-wrap").click()
        page.wait_for_timeout(500)
        assert header_checkbox(page, acc2).is_checked()
        for label in BASE_LABELS:
            assert control(acc2, label).is_visible(), label
        # the hires controls are txt2img only (img2img keeps them hidden, so the arguments line up)
        for label in HIRES_LABELS:
            assert not control(acc2, label).is_visible(), label
        acc2.scroll_into_view_if_needed()
        page.screenshot(path=str(figures / "forge-img2img-deepcache.png"), full_page=True)
        assert not our_errors(page), our_errors(page)


def test_generate_from_the_ui(ui_server, figures):
    """Prompt, size, steps, seed typed in; the accordion opened (DeepCache on) and interval 3 set;
    Generate. The generation info names DeepCache, the console has the summary line, and the
    picture is the one the API makes with the same settings."""
    with browser_page(ui_server) as page:
        page.locator("#txt2img_prompt textarea").fill(BASE["prompt"])
        set_number(page, "txt2img_steps", BASE["steps"])
        set_number(page, "txt2img_width", BASE["width"])
        set_number(page, "txt2img_height", BASE["height"])
        set_number(page, "txt2img_cfg_scale", BASE["cfg_scale"])
        page.locator("#txt2img_seed input").fill(str(BASE["seed"]))
        acc = accordion(page, "txt2img")
        acc.locator("button.label-wrap").click()  # opening it turns DeepCache on
        set_control_number(acc, "Cache interval", 3)
        sampler = page.locator("#txt2img_sampling input").input_value()
        page.wait_for_timeout(500)
        mark = ui_server.mark()
        page.locator("#txt2img_generate").click()
        page.wait_for_function(
            "() => (document.querySelector('#html_info_txt2img')?.innerText || '').includes('Steps:')",
            timeout=600_000)
        info = page.locator("#html_info_txt2img").inner_text()
        page.screenshot(path=str(figures / "forge-txt2img-generated.png"), full_page=True)
        src = page.locator("#txt2img_gallery img").first.get_attribute("src")
        assert not our_errors(page), our_errors(page)
    time.sleep(0.5)
    log = ui_server.log_since(mark)
    assert deepcache_settings(info) == dict(interval=3, branch=0, schedule="uniform", start=0.0, end=1.0,
                                            off=None), info
    assert re.search(r"\[DeepCache\] DeepCache: 3 full / 5 cached steps", log), log[-3000:]
    assert "Traceback" not in log, log[-4000:]

    url = src if src.startswith("http") else ui_server.url + "/" + src.lstrip("/")
    ui_image = decode_image_bytes(urllib.request.urlopen(url, timeout=60).read())
    api = ui_server.txt2img(deepcache_args(interval=3), sampler_name=sampler)
    assert api.image.shape == ui_image.shape
    assert np.array_equal(api.image, ui_image), "the UI's image differs from the API's with the same settings"


def test_deepcache_tab_preview_and_speed_test(ui_server, figures):
    """The DeepCache tab: the schedule preview of the defaults (20 steps, interval 3), then the
    speed test at its smallest size (256 px) with 3 steps: two images and both times, no error."""
    with browser_page(ui_server) as page:
        page.locator("#tab_deepcache-button").click()
        tab = page.locator("#tab_deepcache")
        tab.wait_for(state="visible", timeout=30_000)
        tab.get_by_role("button", name="Preview schedule").click()
        tab.get_by_text("13 cached").wait_for(timeout=60_000)
        text = tab.inner_text()
        assert "FccFccFccFccFccFccFc" in text, text
        assert "7 full" in text, text
        assert not our_errors(page), our_errors(page)

        for label, value in (("Sampling steps", 3), ("Width and height", 256)):
            box = tab.locator(".gradio-slider").filter(has_text=label).locator("input[type=number]")
            box.fill(str(value))
            box.press("Enter")
        mark = ui_server.mark()
        tab.get_by_role("button", name="Run speed test").click()
        page.wait_for_function(
            "() => /measured speed-up|failed/i.test("
            "document.querySelector('#tab_deepcache')?.innerText.split('Run speed test')[1] || '')",
            timeout=600_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(figures / "forge-deepcache-tab.png"), full_page=True)
        report = tab.inner_text().split("Run speed test", 1)[1]
        images = tab.locator("img").count()
        errors = our_errors(page)
    log = ui_server.log_since(mark)
    assert "failed" not in report.lower(), report + "\n" + log[-4000:]
    assert images >= 2, report
    assert "3 steps, 256×256" in report, report
    assert "Traceback" not in log, log[-4000:]
    assert not errors, errors
