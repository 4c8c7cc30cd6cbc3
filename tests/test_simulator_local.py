"""Local servers report their models and context sizes as Ollama, vLLM and llama.cpp do."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llmrelay.simulator import Simulator, SimulatorServer
from llmrelay.simulator.config import validate_config
from llmrelay.simulator.wire.local import ollama_arch
from llmrelay.testing import make_config

VLLM = "meta-llama/Llama-3.1-8B-Instruct"
LOCAL_MODELS: list[dict[str, Any]] = [
    {"name": "llama3.2", "api": "ollama", "context_window": 131072, "max_output_tokens": 8192},
    {"name": "qwen2.5:7b", "api": "ollama", "context_window": 32768, "max_output_tokens": 8192},
    {"name": VLLM, "api": "vllm", "context_window": 8192, "max_output_tokens": 8192},
    {"name": "phi-4-q4.gguf", "api": "llamacpp", "context_window": 4096, "max_output_tokens": 4096},
    {"name": "gpt-4o-mini", "api": "openai", "context_window": 128000, "max_output_tokens": 16384},
]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = Simulator(validate_config({"models": LOCAL_MODELS}, source="test"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


def chat(model: str, content: str = "hi", **body: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **body}


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("llama3.2", "llama"),
        ("llama3.1:70b", "llama"),
        ("qwen2.5:7b", "qwen2"),
        ("gemma3:4b", "gemma3"),
        ("mistral", "llama"),
        ("phi4", "llama"),
    ],
)
def test_ollama_architecture_from_the_name(name: str, arch: str) -> None:
    """The GGUF architecture follows the model family, as Ollama's model_info reports it."""
    assert ollama_arch(name) == arch


async def test_ollama_show_reports_the_context_length(http: httpx.AsyncClient) -> None:
    """POST /api/show: details, capabilities and <arch>.context_length of the model."""
    response = await http.post("/api/show", json={"model": "qwen2.5:7b"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"modelfile", "parameters", "template", "details", "model_info"}
    assert body["details"]["format"] == "gguf" and body["details"]["family"] == "qwen2"
    assert body["details"]["parameter_size"] == "7B"
    assert body["details"]["quantization_level"] == "Q4_K_M"
    assert body["model_info"]["general.architecture"] == "qwen2"
    assert body["model_info"]["qwen2.context_length"] == 32768
    assert body["capabilities"] == ["completion", "tools"]


async def test_ollama_show_takes_the_older_name_field_and_untagged_names(
    http: httpx.AsyncClient,
) -> None:
    """Older clients send {"name": ...}; a name without a tag means :latest."""
    for body in ({"name": "llama3.2"}, {"model": "llama3.2:latest"}):
        response = await http.post("/api/show", json=body)
        assert response.json()["model_info"]["llama.context_length"] == 131072


async def test_ollama_show_unknown_model_is_404(http: httpx.AsyncClient) -> None:
    """An unknown model is Ollama's 404 naming it; hosted models are not Ollama's."""
    for name in ("nope", "gpt-4o-mini"):
        response = await http.post("/api/show", json={"model": name})
        assert response.status_code == 404
        assert response.json() == {"error": f"model '{name}' not found"}


async def test_ollama_tags_list_tagged_names(http: httpx.AsyncClient) -> None:
    """GET /api/tags lists each Ollama model under its tag with Ollama's fields."""
    models = (await http.get("/api/tags")).json()["models"]
    assert [m["name"] for m in models] == ["llama3.2:latest", "qwen2.5:7b"]
    first = models[0]
    assert set(first) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert len(first["digest"]) == 64 and first["details"]["family"] == "llama"


async def test_untagged_ollama_model_answers_under_latest(http: httpx.AsyncClient) -> None:
    """A chat naming llama3.2:latest reaches the model configured as llama3.2."""
    body = {**chat("llama3.2:latest"), "stream": False}
    response = await http.post("/api/chat", json=body)
    assert response.status_code == 200 and response.json()["message"]["content"] == "Echo: hi"


async def test_v1_models_in_each_servers_format(http: httpx.AsyncClient) -> None:
    """vLLM entries carry max_model_len, llama.cpp entries meta.n_ctx_train, OpenAI's neither."""
    entries = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
    vllm = entries[VLLM]
    assert vllm["max_model_len"] == 8192 and vllm["owned_by"] == "vllm"
    assert vllm["root"] == VLLM and vllm["parent"] is None
    assert entries["phi-4-q4.gguf"]["meta"]["n_ctx_train"] == 4096
    assert entries["phi-4-q4.gguf"]["owned_by"] == "llamacpp"
    openai = entries["gpt-4o-mini"]
    assert "max_model_len" not in openai and "meta" not in openai
    assert entries["llama3.2:latest"]["owned_by"] == "library"


async def test_llamacpp_props_reports_n_ctx(http: httpx.AsyncClient) -> None:
    """GET /props: the context size llama.cpp runs the model with."""
    props = (await http.get("/props")).json()
    assert props["default_generation_settings"]["n_ctx"] == 4096
    assert (await http.get("/props", params={"model": "phi-4-q4.gguf"})).status_code == 200
    assert (await http.get("/props", params={"model": "nope"})).status_code == 404


async def test_vllm_needs_no_key(http: httpx.AsyncClient) -> None:
    """vLLM started without --api-key serves requests with any key or none."""
    assert (await http.post("/v1/chat/completions", json=chat(VLLM))).status_code == 200
    keyed = await http.post(
        "/v1/chat/completions", json=chat(VLLM), headers={"authorization": "Bearer anything"}
    )
    assert keyed.status_code == 200
    hosted = await http.post("/v1/chat/completions", json=chat("gpt-4o-mini"))
    assert hosted.status_code == 401


async def test_vllm_context_error_in_its_own_words(http: httpx.AsyncClient) -> None:
    """A prompt plus max_tokens over max_model_len is vLLM's 400 BadRequestError."""
    response = await http.post(
        "/v1/chat/completions", json=chat(VLLM, "word " * 100, max_tokens=8150)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "BadRequestError" and error["code"] == 400
    prompt = int(error["message"].split("(")[1].split(" ")[0])
    assert error["message"] == (
        "This model's maximum context length is 8192 tokens. However, you requested "
        f"{prompt + 8150} tokens ({prompt} in the messages, 8150 in the completion). "
        "Please reduce the length of the messages or completion."
    )


async def test_llamacpp_context_error_in_its_own_words(http: httpx.AsyncClient) -> None:
    """A prompt over n_ctx is llama.cpp's exceed_context_size_error with both figures."""
    response = await http.post("/v1/chat/completions", json=chat("phi-4-q4.gguf", "word " * 5000))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "exceed_context_size_error" and error["code"] == 400
    assert error["n_ctx"] == 4096 and error["n_prompt_tokens"] > 4096
    assert error["message"] == "the request exceeds the available context size, try increasing it"


async def test_llamacpp_generates_until_the_context_is_full(http: httpx.AsyncClient) -> None:
    """llama.cpp checks only the prompt; a long max_tokens stops at n_ctx with 'length'."""
    response = await http.post(
        "/v1/chat/completions", json=chat("phi-4-q4.gguf", "word " * 4000, max_tokens=4000)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["usage"]["total_tokens"] == 4096
    assert body["choices"][0]["finish_reason"] == "length"


def test_in_process_server_sets_tcp_nodelay() -> None:
    """Accepted connections of the in-process server send small writes at once."""
    with SimulatorServer(make_config()) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/_sim/health").status_code == 200  # the connection stays open
        connections = list(server._thread.server.server_state.connections)
        assert connections
        for connection in connections:
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
