"""The Responses API through the official SDK (`client.responses`) and the OpenAI Agents SDK's default
model class, against the real model. Each answer is checked against the same request served by chat
completions (greedy), so the translation is proven rather than assumed."""
import asyncio
import json

import openai
import pytest

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def chat_text(client, model, messages, max_tokens):
    completion = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)
    return completion.choices[0].message.content


def test_create_answers_as_chat_does_with_usage(client, model):
    response = client.responses.create(model=model, instructions="Answer in one short sentence.",
                                       input="What is the capital of France?", max_output_tokens=24, temperature=0)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    expected = chat_text(client, model, [{"role": "system", "content": "Answer in one short sentence."},
                                         {"role": "user", "content": "What is the capital of France?"}], 24)
    assert response.output_text == expected
    assert response.usage.input_tokens > 10 and 0 < response.usage.output_tokens <= 24
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.instructions == "Answer in one short sentence." and response.max_output_tokens == 24


def test_max_output_tokens_makes_the_response_incomplete(client, model):
    response = client.responses.create(model=model, input="Write a long story about a dragon.",
                                       max_output_tokens=5, temperature=0)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5


def test_stream_events_in_order_with_sequence_numbers(client, model):
    stream = client.responses.create(model=model, input="Name three colours.", max_output_tokens=30,
                                     temperature=0, stream=True)
    events = list(stream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          events[-1].type]
    assert events[-1].type in ("response.completed", "response.incomplete")
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3, "text arrives in pieces"
    final = events[-1].response
    assert final.output_text == "".join(deltas)
    assert final.id == events[0].response.id and events[0].response.status == "in_progress"
    item_ids = {e.item_id for e in events if e.type == "response.output_text.delta"}
    assert item_ids == {final.output[0].id}
    # The same request unstreamed, and as chat, write the same text.
    whole = client.responses.create(model=model, input="Name three colours.", max_output_tokens=30, temperature=0)
    assert whole.output_text == final.output_text


def test_the_stream_helper_accumulates_a_final_response(client, model):
    with client.responses.stream(model=model, input="Say hi.", max_output_tokens=100, temperature=0) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts) and final.status == "completed"


def test_previous_response_id_continues_the_stored_conversation(client, model):
    first = client.responses.create(model=model, input="My name is Ada. Say hello to me.", max_output_tokens=20,
                                    temperature=0)
    second = client.responses.create(model=model, previous_response_id=first.id, input="What is my name?",
                                     max_output_tokens=20, temperature=0)
    assert second.previous_response_id == first.id
    expected = chat_text(client, model, [{"role": "user", "content": "My name is Ada. Say hello to me."},
                                         {"role": "assistant", "content": first.output_text},
                                         {"role": "user", "content": "What is my name?"}], 20)
    assert second.output_text == expected
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens

    assert client.responses.retrieve(second.id).output_text == second.output_text
    deleted = client.responses.delete(second.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError) as refused:
        client.responses.create(model=model, previous_response_id=second.id, input="Again?", max_output_tokens=4)
    assert refused.value.code == "previous_response_not_found"
    assert refused.value.param == "previous_response_id"


def test_store_false_keeps_nothing(client, model):
    response = client.responses.create(model=model, input="Hi.", max_output_tokens=4, store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_a_function_call_round_trip_through_function_call_output(client, model):
    response = client.responses.create(model=model, input="What is the weather in Paris?", tools=[WEATHER],
                                       tool_choice={"type": "function", "name": "get_weather"},
                                       max_output_tokens=60, temperature=0)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    assert response.status == "completed"

    # The caller runs the function and sends its output back, by previous_response_id …
    follow_up = client.responses.create(
        model=model, previous_response_id=response.id, tools=[WEATHER], tool_choice="none", max_output_tokens=30,
        temperature=0,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}])
    assert follow_up.output_text
    # … or with the whole conversation as items (store: false), which must read the same.
    replayed = client.responses.create(
        model=model, tools=[WEATHER], tool_choice="none", max_output_tokens=30, temperature=0, store=False,
        input=[{"role": "user", "content": "What is the weather in Paris?"},
               {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
                "arguments": calls[0].arguments},
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}])
    assert replayed.output_text == follow_up.output_text


def test_function_call_arguments_stream_as_deltas(client, model):
    events = list(client.responses.create(model=model, input="Weather in Tokyo?", tools=[WEATHER],
                                          tool_choice="required", max_output_tokens=60, temperature=0, stream=True))
    added = [e for e in events if e.type == "response.output_item.added"]
    assert added[0].item.type == "function_call" and added[0].item.name == "get_weather"
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"][0]
    assert len(deltas) > 1 and "".join(deltas) == done.arguments
    json.loads(done.arguments)
    assert events[-1].type == "response.completed"
    assert events[-1].response.output[0].arguments == done.arguments


def test_text_format_json_schema_is_enforced(client, model):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    response = client.responses.create(model=model, input="Name a city and its country.", max_output_tokens=60,
                                       temperature=0, text={"format": {"type": "json_schema", "name": "place",
                                                                       "schema": schema, "strict": True}})
    place = json.loads(response.output_text)
    assert set(place) == {"city", "country"}


@pytest.mark.parametrize("body,param", [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    ({"background": True}, "background"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
])
def test_what_is_not_served_gets_a_precise_400(client, model, body, param):
    request = {"model": model, "input": "Hi.", **body}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(**request)
    assert refused.value.param == param, refused.value


def test_the_agents_sdk_runs_an_agent_on_its_default_responses_model(base_url, model):
    import agents
    agents.set_tracing_disabled(True)
    agents.set_default_openai_client(openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0),
                                     use_for_tracing=False)
    agents.set_default_openai_api("responses")
    asked = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        asked.append(city)
        return f"Sunny, 21 C in {city}"

    agent = agents.Agent(name="weather", model=model, instructions="You answer questions about the weather.",
                         tools=[get_weather], tool_use_behavior="stop_on_first_tool",
                         model_settings=agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=60))
    assert isinstance(agent.model if not isinstance(agent.model, str) else
                      agents.OpenAIProvider().get_model(model), agents.OpenAIResponsesModel)
    result = asyncio.run(agents.Runner.run(agent, "What is the weather in Paris?"))
    assert len(asked) == 1, "the model's call reached the tool"
    assert result.final_output == f"Sunny, 21 C in {asked[0]}"
    calls = [item for response in result.raw_responses for item in response.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
