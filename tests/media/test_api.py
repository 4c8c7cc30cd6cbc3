"""The parser's HTTP API over real loopback HTTP: a batch in, a batch out, clear 4xx."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import uvicorn

from llmrelay.media.api import MediaApp
from llmrelay.media.service import MediaParser
from llmrelay.testing import SimulatorHandle

from .conftest import MakeParser


@pytest.fixture
async def base_url(make_parser: MakeParser) -> AsyncIterator[tuple[str, MediaParser]]:
    """The API of a parser on the cheap → strong chain, on a free loopback port."""
    parser = make_parser(health_ttl_s=0)  # every probe asks the groups again
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(MediaApp(parser, max_body=64 * 1024, max_names=50),
                            lifespan="off", log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110  uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", parser
    server.should_exit = True
    await task
    sock.close()


async def _post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        return response.status, await response.json()


async def _get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.headers["x-content-type-options"] == "nosniff"
        return response.status, await response.json()


async def test_a_batch_answers_every_name_in_order(base_url: tuple[str, MediaParser]) -> None:
    """Good names get results, bad ones an error in place; nothing is lost or reordered."""
    url, _ = base_url
    body = b'{"names": ["Seinfeld.S05E07.The.Hamptons.mkv", "", "Dune.2021.1080p.mkv"],' \
           b' "refine": false}'  # fmt: skip
    status, answer = await _post(url + "/api/v1/media/parse", body)
    assert status == 200
    items = answer["items"]
    assert isinstance(items, list) and [i["index"] for i in items] == [0, 1, 2]
    assert items[0]["result"]["title"] == "Seinfeld" and items[0]["result"]["episode"] == [7]
    assert items[1]["error"] == "name: empty"
    assert items[2]["result"]["type"] == "movie" and items[2]["result"]["year"] == 2021


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"names": "Seinfeld.S05E07.mkv"}', "Expected `array`, got `str` - at `$.names`"),
        (b'{"names": [1]}', "Expected `str`, got `int` - at `$.names[0]`"),
        (b'{"nmes": []}', "Object contains unknown field `nmes`"),
        (b'{"names": [' + b'"a.mkv",' * 50 + b'"b.mkv"]}', "names: 51 names, at most 50"),
    ],
)
async def test_a_bad_request_is_a_400_naming_what_is_wrong(
    base_url: tuple[str, MediaParser], body: bytes, message: str
) -> None:
    url, parser = base_url
    status, answer = await _post(url + "/api/v1/media/parse", body)
    assert status == 400
    error = answer["error"]
    assert isinstance(error, dict) and message in error["message"]
    assert parser.metrics.names == 0  # nothing was parsed


async def test_too_large_a_body_is_a_413(base_url: tuple[str, MediaParser]) -> None:
    url, _ = base_url
    status, answer = await _post(url + "/api/v1/media/parse", b"x" * (65 * 1024))
    assert status == 413 and "larger than 65536 bytes" in str(answer)


async def test_wrong_route_and_method(base_url: tuple[str, MediaParser]) -> None:
    url, _ = base_url
    assert (await _get(url + "/api/v1/media/parse"))[0] == 405
    assert (await _get(url + "/api/v1/nothing"))[0] == 404


async def test_health_reports_each_chain_group(
    base_url: tuple[str, MediaParser], simulator: SimulatorHandle
) -> None:
    """200 when every group answers the probe; 503 naming the group that does not."""
    url, _ = base_url
    status, report = await _get(url + "/api/v1/media/health")
    assert status == 200
    assert set(report["groups"]) == {"cheap", "strong"}
    simulator.set_faults("sim-anthropic", {"500": 1.0})
    status, report = await _get(url + "/api/v1/media/health")
    assert status == 503
    assert report["groups"]["strong"]["ok"] is False
    assert report["groups"]["cheap"]["ok"] is True
