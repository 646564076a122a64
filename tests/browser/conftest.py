"""Fixtures: Debian's Chromium driven by Playwright (no browser download reaches these machines) against the
llmserve under test, started by tests/integration/browser.rs."""
import json
import os
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def base() -> str:
    return os.environ["LLMSERVE_BASE"]


@pytest.fixture(scope="session")
def model() -> str:
    return os.environ["LLMSERVE_MODEL"]


@pytest.fixture(scope="session")
def keyed_base() -> str:
    return os.environ["LLMSERVE_KEYED_BASE"]


@pytest.fixture(scope="session")
def api_key() -> str:
    return os.environ["LLMSERVE_KEY"]


@pytest.fixture(scope="session")
def vision_base() -> str:
    return os.environ["LLMSERVE_VISION_BASE"]


@pytest.fixture(scope="session")
def vision_model() -> str:
    return os.environ["LLMSERVE_VISION_MODEL"]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # bypass_csp lets Playwright evaluate its own scripts in the page; it also means the rendering tests
    # prove the page's own escaping, without the Content-Security-Policy's help.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())
