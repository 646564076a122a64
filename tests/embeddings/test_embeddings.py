"""`/v1/embeddings` through the official SDK against a tiny Qwen3-Embedding written by the harness and
loaded by mistral.rs's real embedding loader: every input form, both encodings, `dimensions`, batches that
answer as single requests do, and the refusals."""
import base64
import concurrent.futures
import math
import struct

import openai
import pytest

TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "¿Dónde está la estación?",
         "fn main() { println!(\"hi\"); }"]


def norm(vector):
    return math.sqrt(sum(v * v for v in vector))


def close(a, b, tolerance=1e-4):
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b))


def embed(client, model, value, **kwargs):
    return client.embeddings.create(model=model, input=value, encoding_format="float", **kwargs)


def test_a_string_gives_one_unit_vector_of_the_model_width(client, model, dimensions):
    response = embed(client, model, TEXTS[0])
    assert response.object == "list" and response.model == model
    [item] = response.data
    assert item.object == "embedding" and item.index == 0
    assert len(item.embedding) == dimensions
    assert abs(norm(item.embedding) - 1) < 1e-3, "the model's Normalize module ran"
    assert response.usage.prompt_tokens == len(TEXTS[0].encode()) and response.usage.total_tokens == \
        response.usage.prompt_tokens, "the tiny tokenizer has one token per byte"


def test_a_batch_answers_as_single_requests_do_in_order(client, model):
    batch = embed(client, model, TEXTS)
    assert [d.index for d in batch.data] == list(range(len(TEXTS)))
    singles = [embed(client, model, text).data[0].embedding for text in TEXTS]
    for got, alone in zip(batch.data, singles):
        assert close(got.embedding, alone), "a batch is the same as one at a time"
    assert not close(singles[0], singles[1]), "different texts, different vectors"
    assert batch.usage.prompt_tokens == sum(len(t.encode()) for t in TEXTS)


def test_concurrent_requests_with_different_inputs_get_their_own_vectors(client, model):
    alone = {text: embed(client, model, text).data[0].embedding for text in TEXTS}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {pool.submit(embed, client, model, text): text for text in TEXTS * 4}
        for future, text in futures.items():
            assert close(future.result().data[0].embedding, alone[text]), text


def test_token_ids_embed_as_their_text_does(client, model):
    text = TEXTS[0]
    ids = list(text.encode())  # the tiny tokenizer: byte b is token b
    by_text = embed(client, model, text).data[0].embedding
    assert close(embed(client, model, ids).data[0].embedding, by_text)
    both = embed(client, model, [ids, list(TEXTS[1].encode())])
    assert close(both.data[0].embedding, by_text) and len(both.data) == 2


def test_one_token_inputs_embed_and_the_model_goes_on(client, model, dimensions):
    # One token has no causal mask: mistral.rs 0.8.1's Qwen3-Embedding hit `unreachable!()` on it and its
    # engine thread died (patch 0011).
    for value in ["0", [48], [[48], [49, 50]]]:
        response = embed(client, model, value)
        assert all(len(d.embedding) == dimensions for d in response.data), value
    assert close(embed(client, model, "0").data[0].embedding, embed(client, model, [48]).data[0].embedding)
    assert len(embed(client, model, TEXTS[0]).data) == 1, "the model still answers"


def test_base64_is_the_float_vector_as_little_endian_f32(client, model):
    floats = embed(client, model, TEXTS[2]).data[0].embedding
    raw = client.embeddings.with_raw_response.create(model=model, input=TEXTS[2], encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    # The same f32 values: JSON writes each as its shortest decimal, so compare them as f32.
    as_f32 = list(struct.unpack(f"<{len(floats)}f", struct.pack(f"<{len(floats)}f", *floats)))
    assert list(decoded) == as_f32
    # The SDK asks for base64 by default and decodes it itself.
    assert client.embeddings.create(model=model, input=TEXTS[2]).data[0].embedding == as_f32


def test_dimensions_cut_and_renormalize(client, model, dimensions):
    full = embed(client, model, TEXTS[3]).data[0].embedding
    short = embed(client, model, TEXTS[3], dimensions=16).data[0].embedding
    assert len(short) == 16 and abs(norm(short) - 1) < 1e-4
    scale = norm(full[:16])
    assert close(short, [v / scale for v in full[:16]])
    with pytest.raises(openai.BadRequestError) as refused:
        embed(client, model, "x", dimensions=dimensions + 1)
    assert refused.value.param == "dimensions"


@pytest.mark.parametrize("body,param", [
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": [[]]}, "input"),
    ({"input": [100000]}, "input"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
])
def test_bad_input_is_a_400_naming_the_field(client, model, body, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=model, **body)
    assert refused.value.param == param, refused.value


def test_an_input_longer_than_the_context_is_refused(client, model):
    with pytest.raises(openai.BadRequestError) as refused:
        embed(client, model, "x" * 600)
    assert refused.value.code == "context_length_exceeded"


def test_each_kind_of_model_names_the_endpoint_it_serves(client, model, generative):
    generator, generative_model = generative
    with pytest.raises(openai.BadRequestError) as refused:
        generator.embeddings.create(model=generative_model, input="x")
    assert refused.value.param == "model" and "/v1/chat/completions" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert refused.value.param == "model" and "/v1/embeddings" in refused.value.message
