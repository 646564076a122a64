#!/usr/bin/env bash
# Regenerates the GLM-4.1V parity fixtures in tests/fixtures/glm4v/ with the reference implementation
# (transformers + torch, float32, CPU). Only a developer changing the fixtures runs this: CI reads the committed
# results and needs no torch.
#
# The venv lives outside the repository (LLMSERVE_REF_VENV, default ~/.cache/llmserve-ref/glm4v-venv) and pins
# the versions the committed fixtures were made with; a different torch or transformers may move the last bits of
# the expected tensors.
#
# Inputs: tests/fixtures/glm4v/screenshot-1080x2400.png is the screenshot in Open-AutoGLM's
# scripts/sample_messages_en.json (Apache-2.0), decoded from its data URL; the other pictures are generated.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${LLMSERVE_REF_VENV:-$HOME/.cache/llmserve-ref/glm4v-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet torch==2.15.0 torchvision==0.29.2 transformers==5.25.0 safetensors numpy pillow \
  tokenizers jinja2
"$venv/bin/python" tests/fixtures/glm4v/make_fixtures.py tests/fixtures/glm4v
