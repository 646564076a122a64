"""Ask a vision model about a screenshot, as the Open-AutoGLM phone agent does.

    llmserve --model ./SmolVLM-256M-Instruct      # a local directory of a vision model
    python examples/vision.py screenshot.png "What app is open?"

Set LLMSERVE_BASE_URL to reach another server. The image travels as a base64 data URL in an `image_url` part (PNG, JPEG, WebP or GIF, at most 10 MiB).
"""
import base64
import mimetypes
import os
import sys

from openai import OpenAI

path, question = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "Describe the screen."
media_type = mimetypes.guess_type(path)[0] or "image/png"
with open(path, "rb") as f:
    data_url = f"data:{media_type};base64,{base64.b64encode(f.read()).decode()}"

client = OpenAI(base_url=os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8080/v1"), api_key="unused")
model = client.models.list().data[0].id
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "text", "text": question},
    ]}],
    max_tokens=128,
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
