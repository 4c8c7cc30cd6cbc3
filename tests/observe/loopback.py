"""An HTTP endpoint on loopback that keeps every request it is sent (OTLP, Langfuse)."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Request = tuple[str, str, dict[str, str], bytes]
"""Method, path, headers (lower-case names) and the body, un-gzipped."""


class Loopback:
    """Answers OTLP trace exports (paths ending ``/v1/traces``) with an empty protobuf and
    anything else with ``{}``; ``requests`` holds what it was sent, in order."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                requests.append((self.command, self.path, headers, body))
                traces = self.path.endswith("/v1/traces")
                reply = b"" if traces else b"{}"
                self.send_response(200)
                kind = "application/x-protobuf" if traces else "application/json"
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
