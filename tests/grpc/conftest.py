"""Fixtures for the gRPC suite: stubs generated from proto/ with grpcio-tools, a channel to the server under
test, and its HTTP base URL for comparisons. The Rust test tests/integration/grpc.rs starts the server."""
import os
import pathlib
import sys
import tempfile

import grpc
import pytest
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pb():
    out = tempfile.mkdtemp(prefix="llmserve-grpc-")
    proto_dir = ROOT / "proto"
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    status = protoc.main([
        "grpc_tools.protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
        str(proto_dir / "llmserve" / "v1" / "llmserve.proto"),
    ])
    assert status == 0, "protoc failed on proto/llmserve/v1/llmserve.proto"
    sys.path.insert(0, out)
    from llmserve.v1 import llmserve_pb2, llmserve_pb2_grpc
    return llmserve_pb2, llmserve_pb2_grpc


@pytest.fixture(scope="session")
def channel():
    with grpc.insecure_channel(os.environ["LLMSERVE_GRPC_ADDR"]) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield channel


@pytest.fixture(scope="session")
def stub(pb, channel):
    return pb[1].LlmserveStub(channel)


@pytest.fixture(scope="session")
def http_base() -> str:
    return os.environ["LLMSERVE_BASE_URL"]


@pytest.fixture(scope="session")
def phase() -> str:
    """`ready` (the model serves), `loading` (it has not loaded yet), `draining` (the server was told to drain)
    or `keys` (a server with API keys)."""
    return os.environ.get("LLMSERVE_GRPC_PHASE", "ready")
