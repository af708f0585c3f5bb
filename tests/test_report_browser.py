"""The session report in headless Chromium, opened from disk with the network blocked.

Chromium is Debian's (``make browser``), driven by Playwright as in ``test_browser.py``.
The screenshot goes to ``test-artifacts/report.png`` (git-ignored); ``docs/img/report.png``
is copied from there by hand.
"""

from __future__ import annotations

import pytest

import a3s_nb

from .test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, playwright_api  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "fix-oscar-2-000"


def test_report_opens_offline_shows_every_prompt_and_folds(fixture_store, tmp_path, playwright_api):  # noqa: F811
    from playwright.sync_api import expect

    out = tmp_path / "report.html"
    a3s_nb.report(SESSION, out, store=fixture_store)
    bundle = fixture_store.load(SESSION)
    prompts = a3s_nb.lab.lineage.prompts(bundle)
    url = out.as_uri()

    browser = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
    )
    requests: list[str] = []
    blocked: list[str] = []
    console: list[str] = []
    try:
        context = browser.new_context(viewport={"width": 1200, "height": 1400})

        def route(r):
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(url)
        page.wait_for_load_state("load")

        # every prompt, in its own section, on screen when scrolled to
        expect(page.locator("section.a3s-prompt")).to_have_count(len(prompts))
        for p in prompts:
            section = page.locator(f"#prompt-{p.number}")
            section.scroll_into_view_if_needed()
            expect(section).to_be_visible()
            expect(section.locator(".a3s-user .a3s-text").first).to_have_text(p.text)

        # a tool call is folded, unfolds on a click and folds again
        call = page.locator("details.a3s-tool-call").first
        args = call.locator("pre")
        expect(args).to_be_hidden()
        call.locator("summary").click()
        expect(args).to_be_visible()
        expect(args).to_contain_text('"file_path"')
        page.locator("#transcript").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "report.png"))
        call.locator("summary").click()
        expect(args).to_be_hidden()

        # the timeline drew one bar per span
        spans = a3s_nb.spans(bundle)
        expect(page.locator("g.a3s-span")).to_have_count(len(spans))
    finally:
        browser.close()
    assert requests == [url]  # nothing but the file itself was even asked for
    assert blocked == []
    assert console == []  # no CSP violation, no error
