#!/usr/bin/env python3
"""Writes the README's screenshot of the chat page (docs/images/chat-page.png) from a running llmserve.

Usage: scripts/chat-page-screenshot.py [BASE_URL] [OUTPUT]   (default http://127.0.0.1:8080, the README's path)
Needs the test venv's Playwright and Debian's Chromium (scripts/python-env.sh, scripts/test-tools.sh)."""
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
output = sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).resolve().parent.parent / "docs/images/chat-page.png")
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    page = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 760}).new_page()
    page.goto(base + "/")
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    page.fill("#system", "You are a concise assistant.")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "120")
    page.fill("#prompt", "Give me three tips for learning Rust, as a list.")
    page.click("#send")
    page.wait_for_function("document.querySelector('.message.assistant .stats').textContent.includes('tokens')",
                           timeout=120_000)
    page.screenshot(path=output)
    browser.close()
print(f"wrote {output}")
