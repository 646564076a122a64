"""The official openai Python SDK against llmserve with the real model: what a client changing only its
base URL relies on."""
import openai
import pytest

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def test_models_list_and_retrieve(client, model):
    ids = [m.id for m in client.models.list()]
    assert ids == [model]
    assert client.models.retrieve(model).id == model


def test_chat_non_streaming(client, model):
    completion = client.chat.completions.create(model=model, messages=HELLO, max_tokens=16, temperature=0)
    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    # The version that answered: `model@version`, what a canary's traffic is told apart by.
    assert completion.model == model and completion.system_fingerprint.startswith(model + "@")
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 1 <= usage.completion_tokens <= 16


def test_chat_streaming_with_usage(client, model):
    stream = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *content_chunks, usage_chunk = chunks
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens >= 1
    assert all(c.usage is None for c in content_chunks)
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert len({c.system_fingerprint for c in chunks}) == 1 and chunks[0].system_fingerprint.startswith(model + "@")
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text
    assert content_chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_max_tokens_gives_length(client, model):
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell me a long story."}], max_completion_tokens=3,
        temperature=0,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


def test_greedy_is_deterministic(client, model):
    answers = {
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=24, temperature=0)
        .choices[0].message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_stop_string_split_across_tokens(client, model):
    messages = [{"role": "user", "content": "List the days of the week."}]
    pieces = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0, stream=True)
        if c.choices and c.choices[0].delta.content
    ]
    full = "".join(pieces)
    k = next(i for i, p in enumerate(pieces[:-1]) if len(p) >= 2 and len(pieces[i + 1]) >= 1)
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    expected = full[: full.index(stop)]

    streamed = client.chat.completions.create(
        model=model, messages=messages, max_tokens=24, temperature=0, stream=True, stop=[stop]
    )
    chunks = list(streamed)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert stop not in text
    assert chunks[-1].choices[0].finish_reason == "stop"

    completion = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0, stop=stop)
    assert completion.choices[0].message.content == expected
    assert completion.choices[0].finish_reason == "stop"


def test_completions_streaming_and_not(client, model):
    completion = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert completion.object == "text_completion"
    assert completion.choices[0].text
    assert completion.usage.completion_tokens <= 8

    chunks = list(client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == completion.choices[0].text
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens

    echoed = client.completions.create(model=model, prompt=["Hello", "Goodbye"], max_tokens=4, temperature=0, echo=True)
    assert [c.index for c in echoed.choices] == [0, 1]
    assert echoed.choices[0].text.startswith("Hello")
    assert echoed.choices[1].text.startswith("Goodbye")


def test_errors_raise_the_sdk_exceptions(client, model):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=model, messages=HELLO, temperature=7.5)
    assert bad.value.status_code == 400
    assert bad.value.body["param"] == "temperature"

    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert missing.value.body["code"] == "model_not_found"

    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=model, prompt="word " * 9000, max_tokens=4)
    assert too_long.value.body["code"] == "context_length_exceeded"

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=[])

    # The server still answers after the errors.
    assert client.chat.completions.create(model=model, messages=HELLO, max_tokens=2).choices


def test_extra_sdk_fields_are_ignored(client, model):
    completion = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=4, temperature=0, user="u-1", metadata={"a": "b"}, store=False,
        parallel_tool_calls=False, extra_body={"skip_special_tokens": False},
    )
    assert completion.choices[0].message.content is not None
