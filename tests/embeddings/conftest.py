"""Fixtures: official OpenAI clients for the tiny embedding model's server and for a text-generation
model's server, both started by tests/integration/embeddings.rs."""
import os

import openai
import pytest


@pytest.fixture(scope="session")
def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=os.environ["LLMSERVE_EMBED_BASE_URL"], api_key="unused", max_retries=0,
                         timeout=120)


@pytest.fixture(scope="session")
def model() -> str:
    return os.environ["LLMSERVE_EMBED_MODEL"]


@pytest.fixture(scope="session")
def dimensions() -> int:
    return int(os.environ["LLMSERVE_EMBED_DIMENSIONS"])


@pytest.fixture(scope="session")
def generative() -> tuple:
    client = openai.OpenAI(base_url=os.environ["LLMSERVE_BASE_URL"], api_key="unused", max_retries=0, timeout=120)
    return client, os.environ["LLMSERVE_MODEL"]
