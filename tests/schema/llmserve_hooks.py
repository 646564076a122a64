"""Schemathesis hooks for the schema fuzz run (tests/integration/schema_fuzz.rs): keep generation short.

Every generation request the fuzzer sends is capped at a few tokens and choices, within the bounds the
document states, so that the run checks the API's answers rather than the model's speed. The request stays
schema-valid: a cap never leaves the documented range."""
import schemathesis

MAX_TOKENS = 4
MAX_CHOICES = 2
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")


def _cap(body, key, bound):
    value = body.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > bound:
        body[key] = bound


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if case.path not in GENERATION_PATHS or not isinstance(body, dict):
        return
    for key in ("max_tokens", "max_completion_tokens"):
        _cap(body, key, MAX_TOKENS)
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = MAX_TOKENS
    for key in ("n", "best_of"):
        _cap(body, key, MAX_CHOICES)
