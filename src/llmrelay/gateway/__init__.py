"""The gateway: ``llmrelay serve``, OpenAI- and Anthropic-compatible HTTP in front of the router.

Modules, one concern each: :mod:`~llmrelay.gateway.app` (the ASGI app, routes, lifespan),
:mod:`~llmrelay.gateway.calls` (one model call over HTTP), the wire formats
(:mod:`~llmrelay.gateway.openai_wire`, :mod:`~llmrelay.gateway.anthropic_wire`,
:mod:`~llmrelay.gateway.wire` for the errors both share), :mod:`~llmrelay.gateway.keys`
and :mod:`~llmrelay.gateway.auth` (virtual keys, who is calling, per-key limits),
:mod:`~llmrelay.gateway.admin`, :mod:`~llmrelay.gateway.ops` and
:mod:`~llmrelay.gateway.openapi` (the other endpoints), :mod:`~llmrelay.gateway.server`
(uvicorn, workers, graceful shutdown) and :mod:`~llmrelay.gateway.settings` (``server:``).
"""
