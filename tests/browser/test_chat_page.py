"""The built-in chat page at `/` in a real browser against the real model: streaming as it arrives, Stop
cancelling the sequence on the server, errors shown plainly, untrusted output rendered inert; and Swagger
UI's "Try it out" working as pre-filled on a server with its own served name."""
import base64
import re
import time

from conftest import get_json

# An 8x8 PNG (the vision suite's first screen).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR4nA3JQQEAMAgDMZSgpEqqhOepQAlKqmjLN1VFFypcTLHFFSmqm"
    "m7UuJlmm2vSP0QLCYsRK05EP0wbGZsxa87EP4YeNHiYYYcbMj+WXrR4mWWXW7I/jj50+JhjjztyP0IHBYcJGy4kPLAsVIExyOP/AAAAAElFTkSuQmCC")

# Records the last answer's text length on every animation frame: growth over many frames is streaming.
RECORD_FRAMES = """() => {
  window.__frames = [];
  const tick = () => {
    const bodies = document.querySelectorAll('.message.assistant .body');
    if (bodies.length) window.__frames.push(bodies[bodies.length - 1].textContent.length);
    requestAnimationFrame(tick);
  };
  tick();
}"""


def open_page(page, base, temperature="0", max_tokens="80"):
    page.goto(base + "/")
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    page.fill("#temperature", temperature)
    page.fill("#max-tokens", max_tokens)


def ask(page, text):
    page.fill("#prompt", text)
    page.click("#send")


def wait_answered(page, timeout=120_000):
    page.wait_for_function("document.querySelector('#send').disabled === false && "
                           "document.querySelectorAll('.message.assistant .stats').length > 0 && "
                           "[...document.querySelectorAll('.message.assistant .stats')].pop().textContent !== ''",
                           timeout=timeout)


def test_the_page_lists_models_and_streams_a_reply(page, base, model):
    open_page(page, base)
    assert page.eval_on_selector("#model", "s => [...s.options].map(o => o.value)") == [model]
    page.evaluate(RECORD_FRAMES)
    ask(page, "Write two sentences about the sea.")
    wait_answered(page)
    frames = page.evaluate("window.__frames")
    growing = sorted({length for length in frames if length > 0})
    assert len(growing) >= 4, f"the answer appeared in {len(growing)} steps: {frames[:50]}"
    assert frames == sorted(frames), "the text only grows"
    stats = page.inner_text(".message.assistant .stats")
    assert re.search(r"TTFT \d+ ms · [\d.]+ tokens/s · \d+ tokens", stats), stats
    answer = page.inner_text(".message.assistant .body")
    assert answer.strip()
    # A second turn sends the conversation so far.
    ask(page, "Now one more.")
    wait_answered(page)
    assert page.locator(".message.assistant").count() == 2
    assert not page.errors, page.errors


def test_stop_ends_the_stream_and_the_server_cancels_the_sequence(page, base):
    open_page(page, base, temperature="0.8", max_tokens="2000")
    ask(page, "Write a very long story about a lighthouse keeper, with many chapters.")
    page.wait_for_function("(document.querySelector('.message.assistant .body') || {textContent: ''})"
                           ".textContent.length > 40", timeout=120_000)
    assert get_json(base + "/health")["requests_running"] == 1
    page.click("#stop")
    wait_answered(page)
    assert "stopped" in page.inner_text(".message.assistant .stats")
    deadline = time.time() + 15
    while time.time() < deadline:
        health = get_json(base + "/health")
        if health["requests_running"] == 0 and health["engine_sequences"] == 0:
            break
        time.sleep(0.2)
    assert health["requests_running"] == 0 and health["engine_sequences"] == 0, health
    # The page is usable again.
    assert page.is_enabled("#send") and not page.is_enabled("#stop")


def test_errors_are_shown_plainly(page, base):
    open_page(page, base, temperature="5")
    ask(page, "Hello?")
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert error.startswith("400:") and "temperature" in error, error
    assert page.input_value("#prompt") == "Hello?", "the question is back in the box, to fix and resend"
    assert page.locator(".message").count() == 0

    # A rate limit says when to retry (the refusal is played by the test: the page's handling is the point).
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=429, headers={"Retry-After": "7", "Content-Type": "application/json"},
        body='{"error": {"message": "Rate limit reached for requests", "type": "rate_limit_error", '
             '"param": null, "code": "rate_limit_exceeded"}}'))
    page.fill("#temperature", "0")
    page.click("#send")
    page.wait_for_function("document.querySelector('#error').textContent.includes('Retry in 7 s')")
    assert "429: Rate limit reached for requests" in page.inner_text("#error")


def sse(*contents):
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]} for c in contents]
    import json
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def test_untrusted_markup_in_a_reply_renders_inert(page, base):
    hostile = ['Look: <img src=x onerror="window.__pwned=1">', ' and <script>window.__pwned=2</script>',
               '\n\n[click](javascript:window.__pwned=3) **<b onmouseover="window.__pwned=4">bold</b>**',
               '\n\n```\n<svg onload="window.__pwned=5"></svg>\n```']
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body=sse(*hostile)))
    open_page(page, base)
    ask(page, "Say something dangerous.")
    wait_answered(page)
    answer = page.locator(".message.assistant .body")
    text = answer.inner_text()
    assert '<img src=x onerror="window.__pwned=1">' in text and "<script>" in text and "<svg" in text
    for tag in ["img", "script", "svg", "b", "iframe"]:
        assert answer.locator(tag).count() == 0, tag
    assert answer.locator("a").count() == 0, "a javascript: link stays text"
    assert answer.locator("strong").count() == 1 and answer.locator("pre code").count() == 1
    page.hover(".message.assistant .body strong")
    assert page.evaluate("window.__pwned") is None
    assert not page.errors, page.errors


def test_the_page_is_served_with_a_content_security_policy(page, base):
    response = page.goto(base + "/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy


def test_swagger_try_it_out_on_chat_returns_200_as_prefilled(page, base):
    page.goto(base + "/docs/")
    operation = page.locator("#operations-OpenAI-create_chat_completion")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.first.wait_for(timeout=120_000)
    assert status.first.inner_text().strip().startswith("200"), operation.locator(".live-responses-table").inner_text()


def test_a_server_with_keys_asks_for_one_and_keeps_it_in_the_tab(page, keyed_base, api_key):
    page.goto(keyed_base + "/")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("401") and "API key" in page.inner_text("#error")
    page.fill("#api-key", api_key)
    page.press("#api-key", "Tab")  # `change` fires as the field loses focus
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    assert page.eval_on_selector("#model", "s => [...s.options].map(o => o.value)") == ["smollm2", "smollm2@v1"]
    assert page.is_hidden("#error")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "8")
    ask(page, "Hello!")
    wait_answered(page)
    assert page.inner_text(".message.assistant .body").strip()
    assert page.evaluate("sessionStorage.getItem('llmserve.apiKey')") == api_key
    page.reload()
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    assert page.input_value("#api-key") == api_key, "the key survives a reload of the tab"


def test_an_attached_image_reaches_a_vision_model(page, vision_base, vision_model):
    page.goto(vision_base + "/")
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    assert page.input_value("#model") == vision_model
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "4")
    page.set_input_files("#image", files=[{"name": "screen.png", "mimeType": "image/png", "buffer": PNG}])
    page.wait_for_selector("#attachments img")
    page.fill("#prompt", "What is on the screen?")
    with page.expect_request("**/v1/chat/completions") as request:
        page.click("#send")
    content = request.value.post_data_json["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is on the screen?"}
    assert content[1]["type"] == "image_url" and content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    wait_answered(page)
    assert page.locator(".message.user img.attached").count() == 1
    assert page.locator("#attachments img").count() == 0, "sent images leave the composer"
    assert page.is_hidden("#error"), page.inner_text("#error")
