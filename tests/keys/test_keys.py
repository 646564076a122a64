"""API keys, roles and per-key limits with the official openai SDK (and plain HTTP where the SDK has no
call): deny by default, 401/403 in OpenAI's envelope, what each role may do, model lists per key,
expiry, revocation by reload, exact requests-per-minute with Retry-After honoured, token budgets with
streaming, disconnects and n > 1, and the x-ratelimit-* headers."""
import json
import os
import time
import urllib.error
import urllib.request

import openai
import pytest

HI = [{"role": "user", "content": "Say hi."}]


def http(base, path, key=None, method="GET", body=None):
    request = urllib.request.Request(base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def chat(client, model="smollm2", **kwargs):
    return client.chat.completions.create(model=model, messages=HI, max_tokens=kwargs.pop("max_tokens", 4),
                                          temperature=0, **kwargs)


def test_probes_need_no_key_and_everything_else_does(base, keys, client_for):
    for path in ["/health/live", "/health/ready", "/health/startup", "/health"]:
        assert http(base, path)[0] == 200, path
    for path in ["/v1/models", "/metrics", "/openapi.json", "/admin/models", "/admin/%75sage"]:
        status, _, body = http(base, path)
        assert status == 401, path
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
    # A route that does not exist is a 404 to anyone, as OpenAI answers an unknown URL.
    assert http(base, "/no/such/route")[0] == 404
    # (The SDK itself refuses to send no key at all; plain HTTP above covers that.)
    with pytest.raises(openai.AuthenticationError) as wrong:
        chat(client_for("sk-not-a-key"))
    assert wrong.value.code == "invalid_api_key"
    status, _, body = http(base, "/v1/chat/completions", method="POST",
                           body={"model": "smollm2", "messages": HI, "max_tokens": 2})
    assert status == 401 and json.loads(body)["error"]["type"] == "invalid_request_error"
    # x-api-key works as well as the bearer header.
    request = urllib.request.Request(base + "/v1/models", headers={"x-api-key": keys["app"]})
    assert urllib.request.urlopen(request, timeout=10).status == 200


def test_an_expired_key_is_refused(keys, client_for):
    with pytest.raises(openai.AuthenticationError) as expired:
        chat(client_for(keys["old"]))
    assert "expired" in expired.value.message


def test_a_user_key_sees_and_uses_only_its_models(keys, client_for):
    client = client_for(keys["app"])
    assert {m.id for m in client.models.list()} == {"smollm2", "smollm2@v1"}
    answer = chat(client)
    assert answer.choices[0].message.content is not None
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(client, model="other")
    assert denied.value.code == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        client.models.retrieve("other")
    # The admin key sees everything.
    assert {"smollm2", "other"} <= {m.id for m in client_for(keys["ops"]).models.list()}


def test_roles_allow_their_actions_only(base, keys, client_for):
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(client_for(keys["scrape"]))
    assert denied.value.code == "permission_denied"
    assert http(base, "/metrics", keys["scrape"])[0] == 200
    assert http(base, "/metrics", keys["app"])[0] == 403
    # A role from [roles]: completions only.
    batch = client_for(keys["batch"])
    assert batch.completions.create(model="smollm2", prompt="1, 2, 3,", max_tokens=2).choices
    with pytest.raises(openai.PermissionDeniedError):
        chat(batch)
    assert http(base, "/admin/models", keys["app"])[0] == 403
    status, _, body = http(base, "/admin/usage", keys["ops"])
    assert status == 200
    usage = {u["key_id"]: u for u in json.loads(body)["data"]}
    assert usage["app"]["requests"]["ok"] >= 1 and usage["app"]["prompt_tokens"] > 0


def test_requests_per_minute_are_exact_and_retry_after_is_honoured(keys, client_for):
    client = client_for(keys["rpm"])
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2", messages=HI, max_tokens=2, temperature=0)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client)
    response = limited.value.response
    assert limited.value.code == "rate_limit_exceeded"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 60
    time.sleep(wait)
    assert chat(client).choices


def test_tokens_per_minute_count_streams_disconnects_and_choices(base, keys, client_for):
    client = client_for(keys["tpm"])
    # A stream is charged what it used: its remaining budget drops by prompt + completion tokens.
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=HI, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True})
    before = int(raw.headers["x-ratelimit-remaining-tokens"])
    chunks = list(raw.parse())
    used = chunks[-1].usage.total_tokens
    assert used > 0
    # A client that disconnects mid-stream is charged too (what was generated until then).
    with client.chat.completions.with_streaming_response.create(
            model="smollm2", messages=HI, max_tokens=200, temperature=0, stream=True) as stream:
        for line in stream.iter_lines():
            if '"content":"' in line:
                break
    time.sleep(1)
    # n > 1 reserves every choice's budget: asking for more than is left is refused with Retry-After.
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=HI, max_tokens=4, temperature=0, n=2)
    after = int(raw.headers["x-ratelimit-remaining-tokens"])
    assert after < before - used, (before, used, after)
    assert raw.parse().usage.completion_tokens <= 8
    with pytest.raises(openai.RateLimitError) as limited:
        for _ in range(20):
            client.chat.completions.create(model="smollm2", messages=HI, max_tokens=60, temperature=0, n=2)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.response.headers["x-ratelimit-limit-tokens"] == "300"


def test_a_browser_preflight_needs_no_key_and_responses_carry_cors_headers(base, keys):
    request = urllib.request.Request(base + "/v1/chat/completions", method="OPTIONS", headers={
        "Origin": "https://chat.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == "https://chat.example.com"
    request = urllib.request.Request(base + "/v1/models", headers={
        "Origin": "https://chat.example.com", "Authorization": f"Bearer {keys['app']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["access-control-allow-origin"] == "https://chat.example.com"
    # An origin not allowed gets no CORS grant.
    request = urllib.request.Request(base + "/v1/chat/completions", method="OPTIONS", headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "access-control-allow-origin" not in response.headers
    except urllib.error.HTTPError as error:
        assert error.code in (400, 403)


def test_a_revoked_key_fails_next_while_its_running_stream_finishes(base, keys, client_for):
    client = client_for(keys["gone"])
    stream = client.chat.completions.create(model="smollm2", messages=HI, max_tokens=40, temperature=0, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    path = os.environ["LLMSERVE_MODELS_FILE"]
    text = open(path).read()
    start = text.index('[[keys]]\nid = "gone"')
    with open(path, "w") as f:
        f.write(text[:start])
    status, _, body = http(base, "/admin/reload", keys["ops"], method="POST")
    assert status == 200, body
    assert "keys replaced" in json.loads(body)["changes"]
    rest = list(stream)
    assert rest[-1].choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.AuthenticationError):
        chat(client)



def test_stored_responses_are_seen_only_by_the_key_that_made_them(client_for, keys):
    app, ops = client_for(keys["app"]), client_for(keys["ops"])
    made = app.responses.create(model="smollm2", input="Say hi.", max_output_tokens=4, temperature=0)
    assert app.responses.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError):
        ops.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as refused:
        ops.responses.create(model="smollm2", previous_response_id=made.id, input="Again.", max_output_tokens=4)
    assert refused.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        ops.responses.delete(made.id)
    app.responses.delete(made.id)
    # A role without the `responses` action may not create one.
    with pytest.raises(openai.PermissionDeniedError):
        client_for(keys["batch"]).responses.create(model="smollm2", input="Hi.", max_output_tokens=4)
