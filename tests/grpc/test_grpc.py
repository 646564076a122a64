"""The gRPC front against the real server and model: the same greedy tokens as HTTP, errors as gRPC status
codes, a cancelled stream freeing its slot, health, reflection."""
import json
import os
import re
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "llmserve.v1.Llmserve"


def post(base, path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def metric(base, name, **labels):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ready_only(phase):
    if phase != "ready":
        pytest.skip("runs while the model serves")


def greedy(pb, max_tokens):
    return pb[0].SamplingParams(temperature=0.0, max_tokens=max_tokens)


PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_streams_the_tokens_http_gives(pb, stub, http_base, phase, prompt):
    ready_only(phase)
    request = pb[0].GenerateRequest(prompt=prompt, sampling=greedy(pb, 24))
    text, finished, tokens = "", None, 0
    for message in stub.Generate(request, timeout=120):
        kind = message.WhichOneof("event")
        if kind == "text":
            text += message.text.text
            tokens += message.text.tokens
        else:
            finished = message.finished
    assert finished is not None, "the stream ends with a Finished message"
    http = post(http_base, "/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0})
    assert text == http["choices"][0]["text"]
    assert finished.usage.completion_tokens == http["usage"]["completion_tokens"] == tokens
    assert finished.usage.prompt_tokens == http["usage"]["prompt_tokens"]
    assert pb[0].FinishReason.Name(finished.finish_reason) == "FINISH_REASON_" + http["choices"][0]["finish_reason"].upper()
    once = stub.GenerateOnce(request, timeout=120)
    assert once.text == text
    assert once.usage == finished.usage


def test_chat_streams_the_answer_http_gives(pb, stub, http_base, phase):
    ready_only(phase)
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three colours."}]
    request = pb[0].ChatRequest(messages=[pb[0].ChatMessage(**m) for m in messages], sampling=greedy(pb, 32))
    content, finished = "", None
    for message in stub.Chat(request, timeout=120):
        if message.WhichOneof("event") == "delta":
            content += message.delta.content
        else:
            finished = message.finished
    http = post(http_base, "/v1/chat/completions", {"messages": messages, "max_tokens": 32, "temperature": 0})
    assert content == http["choices"][0]["message"]["content"]
    assert finished.usage.prompt_tokens == http["usage"]["prompt_tokens"]


def test_a_forced_tool_call_streams_as_tool_call_deltas(pb, stub, phase):
    ready_only(phase)
    tool = pb[0].Tool(name="get_weather", description="Current weather of a city",
                      parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}},
                                                  "required": ["city"], "additionalProperties": False}))
    request = pb[0].ChatRequest(
        messages=[pb[0].ChatMessage(role="user", content="What is the weather in Paris?")],
        tools=[tool], tool_choice="get_weather", sampling=greedy(pb, 60))
    heads, arguments, finished = [], "", None
    for message in stub.Chat(request, timeout=120):
        if message.WhichOneof("event") == "delta":
            call = message.delta.tool_call
            if call.name:
                heads.append((call.index, call.id, call.name))
            arguments += call.arguments
        else:
            finished = message.finished
    assert [h[2] for h in heads] == ["get_weather"]
    assert re.fullmatch(r"call_\w+", heads[0][1])
    assert "city" in json.loads(arguments)
    assert pb[0].FinishReason.Name(finished.finish_reason) == "FINISH_REASON_TOOL_CALLS"


def error_of(call):
    with pytest.raises(grpc.RpcError) as raised:
        result = call()
        if not hasattr(result, "DESCRIPTOR"):
            list(result)
    return raised.value


def test_invalid_arguments_and_unknown_models_get_their_codes(pb, stub, phase):
    ready_only(phase)
    bad = pb[0].GenerateRequest(prompt="Hi", sampling=pb[0].SamplingParams(temperature=7.5))
    error = error_of(lambda: stub.Generate(bad, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "temperature" in error.details()
    error = error_of(lambda: stub.GenerateOnce(pb[0].GenerateRequest(prompt="Hi", model="no-such-model"), timeout=30))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    trailers = dict(error.trailing_metadata())
    assert trailers["llmserve-error-code"] == "model_not_found"
    long_prompt = "hello " * 9000
    error = error_of(lambda: stub.GenerateOnce(pb[0].GenerateRequest(prompt=long_prompt), timeout=60))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(error.trailing_metadata())["llmserve-error-code"] == "context_length_exceeded"


def test_a_cancelled_stream_frees_its_slot(pb, stub, http_base, phase):
    ready_only(phase)
    before = metric(http_base, "llmserve_requests_total", finish_reason="abort", transport="grpc")
    request = pb[0].GenerateRequest(prompt="1, 2, 3, 4, 5, 6,", sampling=greedy(pb, 2000))
    call = stub.Generate(request, timeout=120)
    first = next(call)
    assert first.WhichOneof("event") == "text"
    call.cancel()
    deadline = time.time() + 20
    while time.time() < deadline:
        running = metric(http_base, "llmserve_requests_running")
        aborted = metric(http_base, "llmserve_requests_total", finish_reason="abort", transport="grpc")
        if running == 0 and aborted == before + 1:
            break
        time.sleep(0.2)
    assert (running, aborted) == (0, before + 1), "the engine sequence was cancelled and its slot freed"
    # The slot serves the next call.
    once = stub.GenerateOnce(pb[0].GenerateRequest(prompt="Hi", sampling=greedy(pb, 2)), timeout=60)
    assert once.usage.completion_tokens >= 1


def test_models_tokenize_health_and_reflection(pb, stub, channel, http_base, phase):
    ready_only(phase)
    models = stub.ListModels(pb[0].ListModelsRequest(), timeout=10).models
    http_models = json.load(urllib.request.urlopen(http_base + "/v1/models", timeout=10))["data"]
    assert [m.id for m in models] == [m["id"] for m in http_models]
    assert models[0].state == "ready" and models[0].context_length > 0
    tokens = stub.Tokenize(pb[0].TokenizeRequest(text="Hello world"), timeout=10)
    http = post(http_base, "/tokenize", {"prompt": "Hello world"})
    assert list(tokens.tokens) == http["tokens"] and tokens.count == http["count"]
    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", SERVICE]:
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    database = ProtoReflectionDescriptorDatabase(channel)
    assert SERVICE in database.get_services()
    assert database.FindFileContainingSymbol(SERVICE).name == "llmserve/v1/llmserve.proto"
    assert metric(http_base, "llmserve_grpc_requests_total", method=f"/{SERVICE}/ListModels", code="OK") >= 1


def test_draining_is_not_serving_and_refuses_new_calls(pb, stub, channel, phase):
    if phase != "draining":
        pytest.skip("runs while the server drains")
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.time() + 10
    while time.time() < deadline:
        status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10).status
        if status == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        time.sleep(0.1)
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    error = error_of(lambda: stub.GenerateOnce(pb[0].GenerateRequest(prompt="Hi"), timeout=30))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(error.trailing_metadata())["llmserve-error-code"] == "draining"


def test_loading_is_not_serving_and_calls_wait_for_the_model(pb, stub, channel, phase):
    if phase != "loading":
        pytest.skip("runs while the model loads")
    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", SERVICE]:
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    models = stub.ListModels(pb[0].ListModelsRequest(), timeout=10).models
    assert [m.state for m in models] == ["loading"]
    error = error_of(lambda: stub.GenerateOnce(pb[0].GenerateRequest(prompt="Hi"), timeout=30))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(error.trailing_metadata())["llmserve-error-code"] == "model_not_ready"


def test_keys_are_asked_for_on_every_call(pb, stub, phase):
    if phase != "keys":
        pytest.skip("runs against a server with API keys")
    user = [("authorization", "Bearer " + os.environ["LLMSERVE_GRPC_USER_KEY"])]
    metrics = [("x-api-key", os.environ["LLMSERVE_GRPC_METRICS_KEY"])]
    once = pb[0].GenerateRequest(prompt="Hi", sampling=greedy(pb, 2))
    for metadata in [None, [("authorization", "Bearer sk-not-a-key")]]:
        error = error_of(lambda: stub.GenerateOnce(once, metadata=metadata, timeout=30))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert dict(error.trailing_metadata())["llmserve-error-code"] == "invalid_api_key"
    assert stub.GenerateOnce(once, metadata=user, timeout=60).usage.completion_tokens >= 1
    # The key may use `smollm2` (and its versions), not the alias `chat`; the list shows only what it may use.
    models = stub.ListModels(pb[0].ListModelsRequest(), metadata=user, timeout=10).models
    assert {m.id for m in models} == {"smollm2", "smollm2@v1"}
    error = error_of(lambda: stub.GenerateOnce(
        pb[0].GenerateRequest(model="chat", prompt="Hi", sampling=greedy(pb, 2)), metadata=user, timeout=30))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert dict(error.trailing_metadata())["llmserve-error-code"] == "model_not_allowed"
    # The metrics role may not generate.
    error = error_of(lambda: stub.GenerateOnce(once, metadata=metrics, timeout=30))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert dict(error.trailing_metadata())["llmserve-error-code"] == "permission_denied"


def test_reflection_needs_a_key_and_health_does_not(channel, phase):
    if phase != "keys":
        pytest.skip("runs against a server with API keys")
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    user = [("authorization", "Bearer " + os.environ["LLMSERVE_GRPC_USER_KEY"])]
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10).status \
        == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    error = error_of(lambda: list(reflection.ServerReflectionInfo(iter([ask]), timeout=10)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    answers = list(reflection.ServerReflectionInfo(iter([ask]), metadata=user, timeout=10))
    assert SERVICE in [s.name for s in answers[0].list_services_response.service]


def test_a_method_path_spelled_otherwise_is_no_method(channel, phase):
    if phase != "keys":
        pytest.skip("runs against a server with API keys")
    user = [("authorization", "Bearer " + os.environ["LLMSERVE_GRPC_USER_KEY"])]
    for path in [f"/{SERVICE}/%43hat", f"/{SERVICE}/chat", f"//{SERVICE}/Chat", f"/{SERVICE}/Chat/"]:
        call = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        error = error_of(lambda: call(b"", metadata=user, timeout=10))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED, path
