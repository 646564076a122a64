"""Embeddings with the official SDK, from a server running an embedding model
(`llmserve --model ./Qwen3-Embedding-0.6B`): nearest sentence by cosine similarity.

    python examples/embeddings.py
Set LLMSERVE_BASE_URL to reach another server (default http://127.0.0.1:8080/v1).
"""
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8080/v1"), api_key="unused")
model = client.models.list().data[0].id
documents = ["The cat sleeps on the sofa.", "Interest rates rose again this quarter.", "Paris is in France."]
query = "Which city is the capital of France?"
vectors = [d.embedding for d in client.embeddings.create(model=model, input=[query, *documents]).data]
# The vectors have length 1: the dot product is the cosine similarity.
scores = [sum(q * v for q, v in zip(vectors[0], vector)) for vector in vectors[1:]]
for score, document in sorted(zip(scores, documents), reverse=True):
    print(f"{score:.3f}  {document}")
