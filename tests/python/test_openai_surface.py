"""The rest of the OpenAI surface through the official Python SDK, with the real model: n, seed, logit_bias,
logprobs, structured output, tools (and the SDK's stream helpers), completions' suffix / best_of / echo."""
import json
import math
import os
import urllib.request

import openai
import pydantic
import pytest

def tokenize(text):
    root = os.environ["LLMSERVE_BASE_URL"].removesuffix("/v1")
    request = urllib.request.Request(f"{root}/tokenize", data=json.dumps({"prompt": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["tokens"]


HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
STORY = [{"role": "user", "content": "Tell me a short story about a cat."}]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                                                    "required": ["zone"]}},
}


def test_n_choices_streaming_and_not(client, model):
    completion = client.chat.completions.create(model=model, messages=STORY, n=3, max_tokens=8, temperature=1.0,
                                                seed=11)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert completion.usage.completion_tokens > 8, "usage sums the choices"
    assert len({c.message.content for c in completion.choices}) > 1, "seeded choices differ from each other"

    stream = client.chat.completions.create(model=model, messages=STORY, n=2, max_tokens=6, temperature=1.0, seed=11,
                                            stream=True, stream_options={"include_usage": True})
    texts, finished = {0: "", 1: ""}, set()
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1}
    assert all(texts.values())
    # Not compared with the non-streamed choices: two choices of one request share engine steps or not
    # depending on timing, and the CPU engine's batched steps differ in the last bits of the logits.
    assert usage.completion_tokens >= 2


def test_seed_reproduces_sampled_output(client, model):
    def sample(seed):
        return client.chat.completions.create(model=model, messages=STORY, max_tokens=24, temperature=1.2,
                                              seed=seed).choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    assert any(sample(s) != first for s in (1, 2, 3))


def test_logit_bias_bans_and_forces(client, model):
    tokens = tokenize("Hello")
    plain = client.chat.completions.create(model=model, messages=HELLO, max_tokens=6, temperature=0, logprobs=True)
    first = plain.choices[0].logprobs.content[0]
    banned_id = tokenize(first.token)
    assert len(tokens) == 1 and len(banned_id) == 1
    biased = client.chat.completions.create(model=model, messages=HELLO, max_tokens=6, temperature=0, logprobs=True,
                                            logit_bias={str(banned_id[0]): -100})
    assert biased.choices[0].logprobs.content[0].token != first.token
    forced = client.completions.create(model=model, prompt="The sky is", max_tokens=3, temperature=0,
                                       logit_bias={str(tokens[0]): 100})
    assert forced.choices[0].text == "Hello" * 3


def test_chat_logprobs_shapes(client, model):
    completion = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0,
                                                logprobs=True, top_logprobs=3)
    content = completion.choices[0].logprobs.content
    assert "".join(t.token for t in content).strip() == completion.choices[0].message.content.strip()
    for token in content:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == 3
        # Greedy: the sampled token is the most likely one.
        assert token.top_logprobs[0].token == token.token
        assert math.isclose(token.top_logprobs[0].logprob, token.logprob, abs_tol=1e-5)
        assert bytes(token.bytes).decode("utf-8", "replace") == token.token

    streamed = [t for chunk in client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3, stream=True)
        if chunk.choices and chunk.choices[0].logprobs for t in chunk.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in content]

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=HELLO, top_logprobs=3)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=HELLO, logprobs=True, top_logprobs=21)


def test_completion_logprobs_shapes(client, model):
    completion = client.completions.create(model=model, prompt="The capital of France is", max_tokens=5,
                                           temperature=0, logprobs=2)
    lp = completion.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == completion.choices[0].text
    assert lp.text_offset[0] == 0
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 2 <= len(top) <= 3 and top[token] == logprob

    chunks = list(client.completions.create(model=model, prompt="The capital of France is", max_tokens=5,
                                            temperature=0, logprobs=2, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert streamed == lp.tokens
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model, prompt="x", logprobs=6)


class City(pydantic.BaseModel):
    name: str
    country: str
    population: int


def test_structured_output(client, model):
    # JSON mode constrains every token to a JSON prefix; as OpenAI documents, the object is whole unless the
    # answer was cut at max_tokens. A prompt the small model answers within them ("Describe Paris as JSON."
    # nests objects past 60 tokens since the prompt kernel of engine patch 0016 rounds differently).
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": 'Give the capital of France as a JSON object with the key "capital".'}],
        max_tokens=60, temperature=0, response_format={"type": "json_object"})
    assert completion.choices[0].finish_reason == "stop", completion.choices[0].message.content
    assert isinstance(json.loads(completion.choices[0].message.content), dict)

    parsed = client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "Give me a city."}], max_tokens=80, temperature=0,
        response_format=City)
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City) and isinstance(city.population, int)

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=model, messages=HELLO, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {}}}})
    assert bad.value.body["param"] == "response_format"


def test_required_tool_call(client, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL],
                                                tool_choice="required", max_tokens=80, temperature=0)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name in ("get_weather", "get_time")
    json.loads(call.function.arguments)

    # The answer goes back into the conversation as OpenAI clients send it.
    follow_up = client.chat.completions.create(model=model, max_tokens=16, temperature=0, tools=[WEATHER_TOOL],
                                               messages=messages + [choice.message, {
                                                   "role": "tool", "tool_call_id": call.id,
                                                   "content": '{"temperature": 21}'}], tool_choice="none")
    assert follow_up.choices[0].message.content


def test_a_forced_call_ends_even_when_the_schema_leaves_additional_properties_open(client, model):
    # What LangChain's bind_tools and most hand-written schemas send: no `additionalProperties`, nested
    # objects, optional fields. The call must end with parseable arguments well inside max_tokens.
    tool = {"type": "function", "function": {"name": "book_trip", "description": "Book a trip", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "Destination"},
                       "dates": {"type": "object", "properties": {"start": {"type": "string"},
                                                                   "end": {"type": "string"}}},
                       "travellers": {"type": "integer"}},
        "required": ["city"]}}}
    for choice in ["required", {"type": "function", "function": {"name": "book_trip"}}]:
        completion = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Book me a trip to Paris next week for two."}],
            tools=[tool], tool_choice=choice, max_tokens=200, temperature=0)
        finished = completion.choices[0]
        assert finished.finish_reason == "tool_calls", finished
        arguments = json.loads(finished.message.tool_calls[0].function.arguments)
        assert isinstance(arguments["city"], str)
        assert set(arguments) <= {"city", "dates", "travellers"}
        assert "\n" not in finished.message.tool_calls[0].function.arguments


def test_named_tool_call_streams_and_the_stream_helper_accumulates_it(client, model):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    messages = [{"role": "user", "content": "Weather in Tokyo, in fahrenheit?"}]
    chunks = list(client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL],
                                                 tool_choice=choice, max_tokens=80, temperature=0, stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].type == "function"
    assert all(d.id is None and d.function.name is None for d in deltas[1:])
    assert len(deltas) > 2, "arguments arrive in fragments"
    arguments = json.loads("".join(d.function.arguments or "" for d in deltas))
    assert arguments["unit"] in ("celsius", "fahrenheit")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    with client.chat.completions.stream(model=model, messages=messages, tools=[WEATHER_TOOL], tool_choice=choice,
                                        max_tokens=80, temperature=0) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == arguments


def test_pydantic_function_tool_with_parse(client, model):
    class GetWeather(pydantic.BaseModel):
        city: str
        unit: str

    completion = client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required", max_tokens=80, temperature=0)
    call = completion.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, GetWeather)


def test_completions_suffix_best_of_and_streamed_echo(client, model):
    # SmolLM2's vocabulary has no fill-in-the-middle tokens: `suffix` is refused, not ignored.
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=model, prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))",
                                  max_tokens=8, temperature=0)
    assert bad.value.body["param"] == "suffix"
    assert client.completions.create(model=model, prompt="x", suffix="", max_tokens=1).choices

    best = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6, temperature=1.0, n=2,
                                     best_of=4, seed=5)
    assert [c.index for c in best.choices] == [0, 1]
    assert best.usage.completion_tokens >= 4 * 1
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model, prompt="x", best_of=2, stream=True)

    chunks = list(client.completions.create(model=model, prompt="Hello", max_tokens=4, temperature=0, echo=True,
                                            stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    plain = client.completions.create(model=model, prompt="Hello", max_tokens=4, temperature=0, echo=True)
    assert text == plain.choices[0].text and text.startswith("Hello")


def test_images_are_refused_by_a_text_model(client, model):
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    message = {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                           {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=model, messages=[message])
    assert "does not accept images" in bad.value.body["message"]
    remote = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=model, messages=[remote])
    assert "remote image URLs" in bad.value.body["message"]
