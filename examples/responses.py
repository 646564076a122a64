"""The Responses API with the official SDK: a streamed answer, then a turn that continues it by
`previous_response_id` (the server keeps the conversation), then a function call round trip.

    python examples/responses.py
Set LLMSERVE_BASE_URL to reach another server (default http://127.0.0.1:8080/v1).
"""
import json
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8080/v1"), api_key="unused")
model = client.models.list().data[0].id

with client.responses.stream(model=model, input="My name is Ada. Greet me in one sentence.",
                             max_output_tokens=200) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
    first = stream.get_final_response()
print()

second = client.responses.create(model=model, previous_response_id=first.id, input="What is my name?",
                                 max_output_tokens=32)
print(second.output_text)

weather = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
called = client.responses.create(model=model, input="What is the weather in Paris?", tools=[weather],
                                 tool_choice="required", max_output_tokens=64)
call = next(item for item in called.output if item.type == "function_call")
print("the model called", call.name, json.loads(call.arguments))
answer = client.responses.create(model=model, previous_response_id=called.id, tools=[weather], tool_choice="none",
                                 input=[{"type": "function_call_output", "call_id": call.call_id,
                                         "output": "Sunny, 21 C"}], max_output_tokens=48)
print(answer.output_text)
