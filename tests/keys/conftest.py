"""Fixtures: the llmserve under test (started with a models file holding API keys) and its keys."""
import os

import openai
import pytest


@pytest.fixture(scope="session")
def base() -> str:
    return os.environ["LLMSERVE_BASE_URL"]


@pytest.fixture(scope="session")
def keys() -> dict:
    """Key name → plaintext key, as the models file under test configures them."""
    return {name: os.environ[f"LLMSERVE_KEY_{name.upper()}"] for name in
            ["ops", "app", "scrape", "old", "batch", "rpm", "tpm", "gone"]}


@pytest.fixture(scope="session")
def client_for(base):
    def make(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)
    return make
