"""The admin API over virtual keys: ``/admin/keys`` (master key or an admin key only).

``POST /admin/keys`` makes a key (its secret is in that answer and nowhere else),
``GET /admin/keys[?all=true]`` lists them (revoked ones with ``all``), and
``GET`` / ``PATCH`` / ``DELETE /admin/keys/{id}`` show, change and revoke one. A change
takes effect on every replica at the next request (see :mod:`llmrelay.gateway.auth`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from llmrelay.gateway.http import Request, Responder
from llmrelay.gateway.keys import KeyChanges, KeySpec
from llmrelay.gateway.wire import ApiError, Kind, decode_body

if TYPE_CHECKING:
    from llmrelay.gateway.app import Gateway

_encode = msgspec.json.Encoder().encode
_specs = msgspec.json.Decoder(KeySpec)
_changes = msgspec.json.Decoder(KeyChanges)
_PREFIX = "/admin/keys/"


async def _admin(gateway: Gateway, request: Request) -> None:
    caller = await gateway.keyring.caller(request.api_key())
    if not caller.admin:
        raise ApiError(Kind.PERMISSION, "the admin API is for the master key or an admin key")


async def create_key(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await _admin(gateway, request)
    spec = decode_body(_specs, await request.body(gateway.server.max_body_bytes))
    key, secret = await gateway.keyring.store.create(spec)
    await out.json(201, _encode({**key.public(), "secret": secret}))


async def list_keys(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await _admin(gateway, request)
    everything = b"all=true" in request.query.split(b"&")
    keys = await gateway.keyring.store.list(include_revoked=everything)
    await out.json(200, _encode({"data": [key.public() for key in keys]}))


def _key_id(request: Request) -> str:
    return request.path[len(_PREFIX) :]


async def show_key(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await _admin(gateway, request)
    key = await gateway.keyring.store.get(_key_id(request))
    await out.json(200, _encode(key.public()))


async def update_key(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await _admin(gateway, request)
    changes = decode_body(_changes, await request.body(gateway.server.max_body_bytes))
    key = await gateway.keyring.store.update(_key_id(request), changes)
    await out.json(200, _encode(key.public()))


async def revoke_key(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await _admin(gateway, request)
    key = await gateway.keyring.store.revoke(_key_id(request))
    await out.json(200, _encode(key.public()))


__all__ = ["create_key", "list_keys", "revoke_key", "show_key", "update_key"]
