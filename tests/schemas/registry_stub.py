"""A tiny Confluent-compatible schema registry on 127.0.0.1, for tests of the framing.

It implements the two calls the client makes, with the real registry's status codes:
``POST /subjects/{subject}/versions`` (same schema text -> same id) and
``GET /schemas/ids/{id}`` (404 with error_code 40403 when unknown). A subject may be
marked incompatible to answer 409, and ``fail_next`` answers one request with 500.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class RegistryStub:
    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.incompatible: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.fail_next = False
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _failing(self) -> bool:
                stub.requests.append((self.command, self.path))
                if stub.fail_next:
                    stub.fail_next = False
                    self._answer(500, {"error_code": 50001, "message": "Error in the backend data store"})
                    return True
                return False

            def do_POST(self) -> None:
                if self._failing():
                    return
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                    return self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
                subject = unquote(parts[1])
                text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"]
                if subject in stub.incompatible:
                    return self._answer(409, {"error_code": 409, "message":
                                              "Schema being registered is incompatible with an earlier schema"})
                schema_id = next((i for i, t in stub.schemas.items() if t == text), len(stub.schemas) + 1)
                stub.schemas[schema_id] = text
                stub.subjects.setdefault(subject, []).append(schema_id)
                self._answer(200, {"id": schema_id})

            def do_GET(self) -> None:
                if self._failing():
                    return
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in stub.schemas:
                    return self._answer(200, {"schema": stub.schemas[int(parts[2])]})
                self._answer(404, {"error_code": 40403, "message": "Schema not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "RegistryStub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
