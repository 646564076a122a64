"""The official Python SDK against a vision model (the tiny Idefics3 the Rust harness writes): screenshots sent
as base64 PNG data URLs, the way the Open-AutoGLM phone agent sends them."""
import os

import openai
import pytest

# Two 8x8 PNGs with different pixels.
SCREEN_A = ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR4nA3JQQEAMAgDMZSgpEqqhOepQAlKqmjLN1VFFypcTLHFFSmqm"
            "m7UuJlmm2vSP0QLCYsRK05EP0wbGZsxa87EP4YeNHiYYYcbMj+WXrR4mWWXW7I/jj50+JhjjztyP0IHBYcJGy4kPLAsVIExyOP/AAAAAElFTkSuQmCC")
SCREEN_B = ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAsklEQVR4nA3JIQ6DMBQG4N8tqUAVR2pISIOjCtFk7p2AZB6HW1KPrcEhew"
            "HcO0Q5AaaHqMYtYf3shwfIQAIiwEAAPOAAPBD5JVIlYi24EaEVvhduECVkrmRqZOwljzKQ9JN0syyhcq1Sr+Jb8aTCovyq3K5K6NzoNOo4af7qsGl/"
            "aHfqEia3JpGJi+HNBDb+Mu42JWzubZpsXC0fNlzW/6zrbAnKA6WZ4k58UrjJd+Q+9Adjv0lxWWNieAAAAABJRU5ErkJggg==")
IMAGE_TOKENS = 4  # the tiny model's tokens per image


@pytest.fixture(scope="module")
def vision():
    client = openai.OpenAI(base_url=os.environ["LLMSERVE_VISION_BASE_URL"], api_key="unused", max_retries=0,
                           timeout=300)
    return client, os.environ["LLMSERVE_VISION_MODEL"]


def screen(*pngs):
    content = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}} for png in pngs]
    content.append({"type": "text", "text": "What is on the screen?"})
    return [{"role": "user", "content": content}]


def test_a_vision_model_reads_screenshots(vision):
    client, model = vision

    def ask(*pngs):
        return client.chat.completions.create(model=model, messages=screen(*pngs), max_tokens=4, temperature=0,
                                              logprobs=True, top_logprobs=2)

    text_only, one, again, other = ask(), ask(SCREEN_A), ask(SCREEN_A), ask(SCREEN_B)
    assert one.usage.prompt_tokens >= text_only.usage.prompt_tokens + IMAGE_TOKENS
    assert ask(SCREEN_A, SCREEN_B).usage.prompt_tokens >= text_only.usage.prompt_tokens + 2 * IMAGE_TOKENS
    assert again.choices[0].logprobs.content[0] == one.choices[0].logprobs.content[0]
    assert other.choices[0].logprobs.content[0] != one.choices[0].logprobs.content[0]

    # Streamed through the SDK's helper, as a chat frontend reads it. (Its final completion raises on
    # `finish_reason: length`, so the text is gathered from its delta events.)
    with client.chat.completions.stream(model=model, messages=screen(SCREEN_A), max_tokens=4,
                                        temperature=0) as stream:
        streamed = "".join(event.delta for event in stream if event.type == "content.delta")
    assert streamed == one.choices[0].message.content


def test_vision_requests_out_of_bounds_are_400s(vision):
    client, model = vision
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=model, messages=screen(*[SCREEN_A] * 9), max_tokens=2)
    assert "at most 8 images" in bad.value.body["message"]
    assistant_image = [{"role": "user", "content": "hi"},
                       {"role": "assistant", "content": [{"type": "image_url", "image_url": {
                           "url": f"data:image/png;base64,{SCREEN_A}"}}]}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model, messages=assistant_image, max_tokens=2)


def test_the_responses_api_sends_input_images_as_chat_does(vision):
    client, model = vision
    url = f"data:image/png;base64,{SCREEN_A}"
    response = client.responses.create(model=model, max_output_tokens=4, temperature=0, input=[
        {"role": "user", "content": [{"type": "input_image", "image_url": url},
                                     {"type": "input_text", "text": "What is on the screen?"}]}])
    chat = client.chat.completions.create(model=model, messages=screen(SCREEN_A), max_tokens=4, temperature=0)
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.output_text == chat.choices[0].message.content
