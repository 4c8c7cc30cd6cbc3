"""What servers report about a model's context window: pure readers of their answers.

Each function takes a decoded JSON body as the server sent it and returns the window in
tokens, or ``None`` when the body does not say. The adapters do the requests
(``ask_context_window``); these readers are unit-tested on recorded bodies.
"""

from __future__ import annotations

from typing import Any

from llmrelay.providers.wire import positive_int


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def ollama_show_window(body: Any) -> int | None:
    """The window of Ollama's ``POST /api/show`` answer.

    ``num_ctx`` in ``parameters`` (the Modelfile's setting, what Ollama will actually use)
    wins over the architecture's trained length ``<arch>.context_length`` in
    ``model_info``; any key ending in ``.context_length`` serves when the architecture's
    own key is missing.
    """
    show = _dict(body)
    parameters = show.get("parameters")
    if isinstance(parameters, str):
        for line in parameters.splitlines():
            name, _, value = line.strip().partition(" ")
            if name == "num_ctx" and (window := positive_int(value.strip())):
                return window
    info = _dict(show.get("model_info"))
    arch = info.get("general.architecture")
    if isinstance(arch, str) and (window := positive_int(info.get(f"{arch}.context_length"))):
        return window
    for key, value in info.items():
        if key.endswith(".context_length") and (window := positive_int(value)):
            return window
    return None


def listed_model(listing: Any, model: str) -> dict[str, Any] | None:
    """The entry for ``model`` in an OpenAI-style ``GET /models`` list.

    A server serving a single model may list it under another id (llama.cpp lists the
    file it loaded), so a list of one is that model.
    """
    entries = [e for e in _dict(listing).get("data") or [] if isinstance(e, dict)]
    wanted = {model, f"{model}:latest", model.removesuffix(":latest")}
    for entry in entries:
        if entry.get("id") in wanted:
            return entry
    return entries[0] if len(entries) == 1 else None


def vllm_window(entry: dict[str, Any] | None) -> int | None:
    """vLLM's ``max_model_len`` on a ``/models`` entry: the window it serves with."""
    return positive_int(_dict(entry).get("max_model_len"))


def llamacpp_trained_window(entry: dict[str, Any] | None) -> int | None:
    """llama.cpp's ``meta.n_ctx_train`` on a ``/models`` entry: the model's trained length,
    an upper bound when ``/props`` does not give the window the server was started with."""
    return positive_int(_dict(_dict(entry).get("meta")).get("n_ctx_train"))


def llamacpp_props_window(props: Any) -> int | None:
    """llama.cpp's ``GET /props``: ``default_generation_settings.n_ctx``, the effective window."""
    return positive_int(_dict(_dict(props).get("default_generation_settings")).get("n_ctx"))


def lmstudio_window(body: Any) -> int | None:
    """LM Studio's ``GET /api/v0/models/{model}``: ``max_context_length``."""
    return positive_int(_dict(body).get("max_context_length"))


def gemini_window(body: Any) -> int | None:
    """Gemini's ``GET /models/{model}``: ``inputTokenLimit``, the input the model accepts.

    ``outputTokenLimit`` is a separate cap on the answer, not part of the input window.
    """
    return positive_int(_dict(body).get("inputTokenLimit"))


__all__ = [
    "gemini_window",
    "listed_model",
    "llamacpp_props_window",
    "llamacpp_trained_window",
    "lmstudio_window",
    "ollama_show_window",
    "vllm_window",
]
