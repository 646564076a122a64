"""Schemathesis hooks for the schema fuzz run (tests/integration/schema_fuzz.rs).

1. Generation stays short: every generation request is capped at a few tokens and choices, within the
   bounds the document states, so that the run checks the API's answers rather than the model's speed.
2. The rules JSON Schema cannot state (comparisons between fields; a `parameters` schema the grammar
   compiler accepts) are in the operations' descriptions, and a 400 for a request that breaks one of them
   is expected: such a "schema-valid request rejected" finding is dropped here, and only such a one, after
   checking that the answer names the rule. Every other finding fails the run.
"""
import json

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

MAX_TOKENS = 4
MAX_CHOICES = 2
MAX_SEQUENCES = 64
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")


def _cap(body, key, bound):
    value = body.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > bound:
        body[key] = bound


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if case.path not in GENERATION_PATHS or not isinstance(body, dict):
        return
    if case.path == "/v1/responses":
        _cap(body, "max_output_tokens", MAX_TOKENS)
        if body.get("max_output_tokens") is None:
            body["max_output_tokens"] = MAX_TOKENS
        return
    for key in ("max_tokens", "max_completion_tokens"):
        _cap(body, key, MAX_TOKENS)
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = MAX_TOKENS


def _number(body, key, default):
    value = body.get(key)
    return default if value is None else value


def _documented_rule(case):
    """The cross-field rule this request breaks, as the server words it, if any."""
    body = case.body if isinstance(case.body, dict) else {}
    if case.path == "/v1/completions":
        prompt = body.get("prompt")
        prompts = len(prompt) if isinstance(prompt, list) else 1
        n = _number(body, "n", 1)
        best_of = _number(body, "best_of", n)
        if best_of < n:
            return "`best_of` must be at least `n`"
        if best_of > n and body.get("stream"):
            return "`best_of` cannot be streamed"
        if prompts * best_of > MAX_SEQUENCES:
            return "choices is more than 64 sequences per request"
    if case.path == "/v1/chat/completions":
        tools = body.get("tools") or []
        names = [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)]
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("function", {}).get("name") not in names:
            return "which is not in `tools`"
        if choice == "required" or isinstance(choice, dict):
            # The grammar of a forced call compiles the tools' `parameters` schemas.
            return "tools"
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            # Its schema is compiled into a grammar.
            return "response_format"
    if case.path == "/v1/responses":
        # The chat rules, in the Responses shapes (flat tools; `text.format` for `response_format`).
        tools = body.get("tools") or []
        names = [t.get("name") for t in tools if isinstance(t, dict)]
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("name") not in names:
            return "which is not in `tools`"
        if choice == "required" or isinstance(choice, dict):
            return "tools"
        text = body.get("text")
        format_ = text.get("format") if isinstance(text, dict) else None
        if isinstance(format_, dict) and format_.get("type") == "json_schema":
            return "text.format"
    return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    rule = _documented_rule(case)
    if rule is None:
        return True
    error = json.loads(response.text).get("error", {})
    named = rule in error.get("message", "") or rule == error.get("param")
    return not named
