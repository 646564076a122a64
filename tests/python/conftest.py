"""Shared fixtures: an official OpenAI client pointed at the llmserve under test."""
import os

import openai
import pytest


@pytest.fixture(scope="session")
def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=os.environ["LLMSERVE_BASE_URL"], api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def model() -> str:
    return os.environ["LLMSERVE_MODEL"]


@pytest.fixture(scope="session")
def base_url() -> str:
    return os.environ["LLMSERVE_BASE_URL"]
