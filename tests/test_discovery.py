"""Context-window discovery: readers of recorded server answers, then the requests themselves
against a small server that answers in each server's real format."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from llmrelay.providers import Deployment, HttpClient, HttpProvider, Timeouts, default_registry
from llmrelay.providers.windows import (
    gemini_window,
    listed_model,
    llamacpp_props_window,
    llamacpp_trained_window,
    lmstudio_window,
    ollama_show_window,
    vllm_window,
)

# -- recorded answers ----------------------------------------------------------------------

OLLAMA_SHOW = {
    "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
    "modelfile": "FROM llama3.2:latest\nPARAMETER num_ctx 8192\n",
    "parameters": 'num_ctx                        8192\nstop                           "<|eot_id|>"',
    "template": "{{ .Prompt }}",
    "details": {"family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
    "model_info": {
        "general.architecture": "llama",
        "general.parameter_count": 3212749888,
        "llama.attention.head_count": 24,
        "llama.context_length": 131072,
        "llama.embedding_length": 3072,
    },
    "capabilities": ["completion", "tools"],
}
OLLAMA_SHOW_NO_NUM_CTX = {
    "parameters": 'stop                           "<end_of_turn>"',
    "model_info": {"general.architecture": "gemma3", "gemma3.context_length": 131072},
}
VLLM_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "meta-llama/Llama-3.1-8B-Instruct",
            "object": "model",
            "created": 1733000000,
            "owned_by": "vllm",
            "root": "meta-llama/Llama-3.1-8B-Instruct",
            "parent": None,
            "max_model_len": 8192,
            "permission": [],
        }
    ],
}
LLAMACPP_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "models/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
            "object": "model",
            "created": 1733000000,
            "owned_by": "llamacpp",
            "meta": {
                "vocab_type": 2,
                "n_vocab": 128256,
                "n_ctx_train": 131072,
                "n_embd": 3072,
                "n_params": 3212749888,
                "size": 2019373056,
            },
        }
    ],
}
LLAMACPP_PROPS = {
    "default_generation_settings": {"id": 0, "n_ctx": 4096, "params": {"n_predict": -1}},
    "total_slots": 1,
    "model_path": "models/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
    "chat_template": "...",
}
LMSTUDIO_MODEL = {
    "id": "qwen2.5-7b-instruct",
    "object": "model",
    "type": "llm",
    "publisher": "lmstudio-community",
    "arch": "qwen2",
    "compatibility_type": "gguf",
    "quantization": "Q4_K_M",
    "state": "loaded",
    "max_context_length": 32768,
}
GEMINI_MODEL = {
    "name": "models/gemini-2.5-flash",
    "version": "001",
    "displayName": "Gemini 2.5 Flash",
    "inputTokenLimit": 1048576,
    "outputTokenLimit": 65536,
    "supportedGenerationMethods": ["generateContent", "countTokens"],
}


def test_ollama_num_ctx_wins_over_the_trained_length() -> None:
    """num_ctx from parameters is what Ollama uses, so it is preferred to model_info."""
    assert ollama_show_window(OLLAMA_SHOW) == 8192


def test_ollama_trained_length_when_num_ctx_is_not_set() -> None:
    """Without num_ctx, the architecture's context_length is the window."""
    assert ollama_show_window(OLLAMA_SHOW_NO_NUM_CTX) == 131072
    assert ollama_show_window({"model_info": OLLAMA_SHOW["model_info"]}) == 131072


def test_ollama_any_context_length_key_when_the_arch_key_is_missing() -> None:
    """A model_info without <arch>.context_length still gives any *.context_length key."""
    body = {"model_info": {"general.architecture": "qwen3", "qwen3moe.context_length": 40960}}
    assert ollama_show_window(body) == 40960
    assert ollama_show_window({"model_info": {"bert.context_length": 512}}) == 512


@pytest.mark.parametrize(
    "body",
    [
        {},
        None,
        [],
        {"model_info": {"general.architecture": "llama"}},
        {"parameters": "num_ctx abc", "model_info": {}},
        {"model_info": {"llama.context_length": 0}},
    ],
)
def test_ollama_says_nothing(body: Any) -> None:
    """An answer without a usable figure gives None, not a guess."""
    assert ollama_show_window(body) is None


def test_listed_model_is_matched_by_id() -> None:
    """The entry whose id is the model; :latest is the bare name; a lone entry is the model."""
    two = {"data": [{"id": "a", "max_model_len": 1}, {"id": "b:latest", "max_model_len": 2}]}
    assert listed_model(two, "a") == {"id": "a", "max_model_len": 1}
    assert listed_model(two, "b") == {"id": "b:latest", "max_model_len": 2}
    assert listed_model(two, "c") is None
    lone = listed_model(LLAMACPP_MODELS, "llama")
    assert lone is not None and lone["id"].endswith(".gguf")
    assert listed_model({"data": "nope"}, "a") is None and listed_model(None, "a") is None


def test_server_kind_readers() -> None:
    """Each server's own field: vLLM max_model_len, llama.cpp n_ctx and n_ctx_train,
    LM Studio max_context_length, Gemini inputTokenLimit (not the output limit)."""
    vllm = listed_model(VLLM_MODELS, "meta-llama/Llama-3.1-8B-Instruct")
    llamacpp = listed_model(LLAMACPP_MODELS, "x")
    assert vllm_window(vllm) == 8192 and vllm_window(llamacpp) is None
    assert llamacpp_trained_window(llamacpp) == 131072 and llamacpp_trained_window(vllm) is None
    assert llamacpp_props_window(LLAMACPP_PROPS) == 4096 and llamacpp_props_window({}) is None
    assert lmstudio_window(LMSTUDIO_MODEL) == 32768 and lmstudio_window({"id": "x"}) is None
    assert gemini_window(GEMINI_MODEL) == 1048576 and gemini_window({"name": "x"}) is None


# -- the requests ---------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeServer:
    """A loopback server answering the routes a test gives it, recording what it was asked."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, body: Any, status: int = 200) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            if isinstance(body, str):
                return web.Response(status=status, text=body, content_type="text/html")
            return web.json_response(body, status=status)

        self.routes[(method, path)] = handler

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json() if request.can_read_body else None
        self.seen.append((request.method, request.path, dict(request.headers), payload))
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": "not found"}, status=404)
        return await handler(request)

    @property
    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _, _ in self.seen]


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake._dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # started above
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    async with HttpClient() as made:
        yield made


def provider(client: HttpClient, kind: str, model: str, base_url: str, **kw: Any) -> HttpProvider:
    made = default_registry().create(
        Deployment(provider=kind, model=model, base_url=base_url, **kw), client
    )
    assert isinstance(made, HttpProvider)
    return made


async def test_ollama_asks_api_show(server: FakeServer, client: HttpClient) -> None:
    """Ollama: POST /api/show with the model, with the key when one is set; num_ctx wins."""
    server.answer("POST", "/api/show", OLLAMA_SHOW)
    made = provider(client, "ollama", "llama3.2", server.url, api_key="sk-local")
    assert await made.discover_context_window() == 8192
    [(method, path, headers, payload)] = server.seen
    assert (method, path, payload) == ("POST", "/api/show", {"model": "llama3.2"})
    assert headers["Authorization"] == "Bearer sk-local"


async def test_vllm_window_from_models(server: FakeServer, client: HttpClient) -> None:
    """vLLM: max_model_len in GET /v1/models answers at once; nothing else is asked."""
    server.answer("GET", "/v1/models", VLLM_MODELS)
    made = provider(client, "vllm", "meta-llama/Llama-3.1-8B-Instruct", server.url + "/v1")
    assert await made.discover_context_window() == 8192
    assert server.paths == ["GET /v1/models"]


async def test_llamacpp_prefers_the_props_window(server: FakeServer, client: HttpClient) -> None:
    """llama.cpp: n_ctx from GET /props (the window it runs with) beats n_ctx_train."""
    server.answer("GET", "/v1/models", LLAMACPP_MODELS)
    server.answer("GET", "/props", LLAMACPP_PROPS)
    made = provider(client, "llamacpp", "llama", server.url + "/v1")
    assert await made.discover_context_window() == 4096
    assert server.paths == ["GET /v1/models", "GET /props"]


async def test_llamacpp_trained_length_without_props(
    server: FakeServer, client: HttpClient
) -> None:
    """llama.cpp without /props: the trained length from the models list is the window."""
    server.answer("GET", "/v1/models", LLAMACPP_MODELS)
    made = provider(client, "llamacpp", "llama", server.url + "/v1")
    assert await made.discover_context_window() == 131072


async def test_lmstudio_window_from_its_own_api(server: FakeServer, client: HttpClient) -> None:
    """LM Studio: its /v1/models says nothing, /api/v0/models/{model} has max_context_length."""
    server.answer("GET", "/v1/models", {"data": [{"id": "qwen2.5-7b-instruct"}, {"id": "other"}]})
    server.answer("GET", "/api/v0/models/qwen2.5-7b-instruct", LMSTUDIO_MODEL)
    made = provider(client, "lmstudio", "qwen2.5-7b-instruct", server.url + "/v1")
    assert await made.discover_context_window() == 32768
    assert server.paths[-1] == "GET /api/v0/models/qwen2.5-7b-instruct"


async def test_gemini_window_from_the_model(server: FakeServer, client: HttpClient) -> None:
    """Gemini: GET /v1beta/models/{model} with the API key header; inputTokenLimit."""
    server.answer("GET", "/v1beta/models/gemini-2.5-flash", GEMINI_MODEL)
    made = provider(client, "gemini", "gemini-2.5-flash", server.url, api_key="g-key")
    assert await made.discover_context_window() == 1048576
    [(_, _, headers, _)] = server.seen
    assert headers["x-goog-api-key"] == "g-key"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_hosted_apis_report_no_window(
    server: FakeServer, client: HttpClient, kind: str
) -> None:
    """OpenAI and Anthropic publish no window over their APIs: None, and nothing is asked."""
    made = provider(client, kind, "any-model", server.url)
    assert await made.discover_context_window() is None
    assert server.seen == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "unauthorized"}),
        (500, {"error": "boom"}),
        (200, "<html>not json</html>"),
        (200, {"unexpected": True}),
    ],
    ids=["auth", "server-error", "not-json", "no-figure"],
)
async def test_failures_are_none(
    server: FakeServer, client: HttpClient, status: int, body: Any
) -> None:
    """An error or unreadable answer gives None (the real call reports an auth failure)."""
    server.answer("POST", "/api/show", body, status=status)
    made = provider(client, "ollama", "llama3.2", server.url)
    assert await made.discover_context_window() is None
    assert server.paths == ["POST /api/show"]


async def test_unreachable_server_is_none_after_one_try(client: HttpClient) -> None:
    """A refused connection ends the search at the first request and gives None."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    made = provider(client, "openai_compatible", "m", f"http://127.0.0.1:{port}/v1")
    opened: list[str] = []
    original = client.fetch

    def counting(wire: Any, timeouts: Any, origin: Any) -> Any:
        opened.append(wire.url)
        return original(wire, timeouts, origin)

    client.fetch = counting  # type: ignore[method-assign]  # count the requests made
    assert await made.discover_context_window() is None
    assert opened == [f"http://127.0.0.1:{port}/v1/models"]


async def test_deployment_timeouts_are_honoured(server: FakeServer, client: HttpClient) -> None:
    """A server that never answers is given up on after the deployment's first-byte timeout."""
    release = asyncio.Event()

    async def stalled(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response(OLLAMA_SHOW)

    server.routes[("POST", "/api/show")] = stalled
    timeouts = Timeouts(connect=0.05, first_byte=0.05, idle=0.05)
    made = provider(client, "ollama", "llama3.2", server.url, timeouts=timeouts)
    try:
        assert await made.discover_context_window() is None
    finally:
        release.set()
