"""The gradio UI of a real A1111 (A1111_PATH) in headless Chromium (Playwright, Debian chromium):
pasting generation parameters back into the DeepCache accordion, and the DeepCache tab's speed test.

Screenshots go to DEEPCACHE_FIGURES (default: pytest's tmp_path).
"""
import re

import pytest
from a1111_server import skip_reason
from headless_chromium import browser_skip_reason
from sd_webui import deepcache_args, webui_page

reason = skip_reason() or browser_skip_reason()
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")


def exactly(text):
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def accordion(page):
    acc = page.locator("#tab_txt2img .input-accordion").filter(
        has=page.locator(".label-wrap > span", has_text=exactly("DeepCache")))
    assert acc.count() == 1, f"{acc.count()} DeepCache accordions in txt2img"
    return acc


def number_box(page, scope, label):
    """The number box of a gradio slider, found by the slider's label."""
    return scope.locator(".gradio-slider").filter(
        has=page.locator('[data-testid="block-info"]', has_text=exactly(label))).locator('input[type="number"]')


def read_controls(page, acc) -> dict:
    """What the accordion's controls show, by their labels."""
    def number(label):
        return float(number_box(page, acc, label).input_value())

    def checkbox(label):
        return acc.locator(".gradio-checkbox label", has_text=label).locator('input[type="checkbox"]').is_checked()

    radio = acc.locator(".gradio-radio").filter(
        has=page.locator('[data-testid="block-info"]', has_text=exactly("Schedule")))
    selected = radio.locator("label.selected input")
    return {"enabled": acc.locator("input.input-accordion-checkbox").is_checked(),
            "interval": number("Cache interval"), "branch": number("Cache branch"),
            "schedule": selected.get_attribute("value") if selected.count() == 1 else None,
            "start": number("Start percent"), "end": number("End percent"),
            "hr_enabled": checkbox("Also on the hires pass"), "hr_interval": number("Hires cache interval"),
            "hr_start": number("Hires start percent")}


def paste(page, infotext):
    page.locator("#txt2img_prompt textarea").fill(infotext)
    page.locator("#tab_txt2img #paste").click()
    page.wait_for_timeout(2500)  # gradio applies the pasted values in a round trip


def test_paste_parameters_into_the_accordion(ui_server, figures):
    settings = dict(interval=5, branch=2, schedule="non-uniform", start=0.1, end=0.9, hr_enabled=True,
                    hr_interval=4, hr_start=0.25)
    # an image whose parameters the server itself wrote (2 steps, hires 1 step: only its infotext is used)
    made = ui_server.txt2img(steps=2, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=1,
                             denoising_strength=0.5, alwayson_scripts=deepcache_args(**settings))
    assert "DeepCache" in made.infotext, made.infotext
    plain = ui_server.plain().infotext
    with webui_page(ui_server) as page:
        acc = accordion(page)
        initial = read_controls(page, acc)
        assert initial["enabled"] is False and initial["interval"] == 3, initial
        paste(page, made.infotext)
        got = read_controls(page, acc)
        page.screenshot(path=str(figures / "a1111-paste-deepcache.png"), full_page=True)
        want = dict(settings, enabled=True)
        assert got == pytest.approx(want), f"pasted {made.infotext!r}: controls show {got}"
        # parameters without DeepCache turn it off
        paste(page, plain)
        off = read_controls(page, acc)
        assert off["enabled"] is False and off["hr_enabled"] is False, off
        errors = [e for e in page.errors if "deepcache" in e.lower()]
        assert not errors, errors


def test_speed_test_tab(ui_server, figures):
    with webui_page(ui_server) as page:
        page.locator("#tabs > .tab-nav button", has_text=exactly("DeepCache")).click()
        tab = page.locator("#tab_deepcache")
        tab.wait_for(state="visible", timeout=30_000)
        # the smallest the tab allows: 256 px (a 256 px step is ~30 s on one busy CPU core), 2 steps: F c
        for label, value in (("Sampling steps", "2"), ("Width and height", "256")):
            box = number_box(page, tab, label)
            box.fill(value)
            box.press("Enter")
            box.blur()
        page.wait_for_timeout(500)
        tab.get_by_role("button", name="Run speed test").click()
        # the report: times and the measured speed-up (or the error the tab shows)
        page.wait_for_function("""() => {
            const t = document.querySelector('#tab_deepcache')?.innerText || '';
            return /speed-up/i.test(t) || /failed/i.test(t); }""", timeout=600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(figures / "a1111-deepcache-speed-test.png"), full_page=True)
        text = tab.inner_text()
        assert "failed" not in text.lower(), text
        assert re.search(r"speed-up", text, re.I), text
        images = tab.locator("img")
        srcs = [images.nth(i).get_attribute("src") or "" for i in range(images.count())]
        srcs = [s for s in srcs if s.startswith("data:image") or "/file=" in s]
        assert len(srcs) >= 2, f"expected the Baseline and DeepCache images, got {srcs}"
        errors = [e for e in page.errors if "deepcache" in e.lower()]
        assert not errors, errors
