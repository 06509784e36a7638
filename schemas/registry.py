"""A small client of a Confluent-compatible schema registry (Confluent, Karapace, Apicurio).

Only what the wire format needs: register a schema under a subject to get its id, and
fetch a schema by id. Both are cached for the life of the client, because ids never
change once assigned; the registry is asked once per schema and process, not per record.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from ground.errors import TerminalError, TransientError
from schemas.catalog import SchemaVersion

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryUnavailableError(TransientError):
    """The registry could not be reached or failed (5xx); retrying may succeed."""

    code = "registry_unavailable"


class SchemaRejectedError(TerminalError):
    """The registry refused a schema (e.g. 409: incompatible with the subject) or an id is unknown."""

    code = "schema_rejected"


class SchemaRegistry:
    """Registers and looks up schemas by id over HTTP; thread-safe, cached.

    Args:
        url: base URL, e.g. ``http://registry:8081``.
        timeout_s: per request; a registry that does not answer is a transient error.
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0):
        import httpx  # here, not at the top: a consumer without a registry does not load it (~13 MB)

        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s,
                                  headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE})
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, bytes], int] = {}
        self._schemas: dict[int, SchemaVersion] = {}

    def __enter__(self) -> "SchemaRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def register(self, subject: str, schema: SchemaVersion) -> int:
        """The id of ``schema`` under ``subject``, registering it if the registry lacks it.

        Raises:
            SchemaRejectedError: the registry refused it (incompatible with the subject).
            RegistryUnavailableError: the registry could not be reached or failed.
        """
        key = (subject, schema.fingerprint)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        body = self._call("POST", f"/subjects/{quote(subject, safe='')}/versions",
                          f"{schema.name} v{schema.version} under subject {subject}",
                          json={"schema": schema.path.read_text()})
        schema_id = int(body["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._schemas.setdefault(schema_id, schema)
        return schema_id

    def schema(self, schema_id: int) -> SchemaVersion:
        """The writer schema of ``schema_id``, parsed (``version`` 0: as the registry holds it).

        Raises:
            SchemaRejectedError: the registry does not know the id.
            RegistryUnavailableError: the registry could not be reached or failed.
        """
        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
        body = self._call("GET", f"/schemas/ids/{schema_id}", f"schema id {schema_id}")
        try:
            raw = json.loads(body["schema"])
            parsed = fastavro.parse_schema(raw)  # the hint lets fastavro skip re-parsing per record
        except (KeyError, ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SchemaRejectedError(f"schema id {schema_id} from {self.url} is not an Avro schema: {exc}") from exc
        found = SchemaVersion(
            name=raw["name"], version=0, path=None, parsed=parsed,
            fingerprint=bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")),
        )
        with self._lock:
            return self._schemas.setdefault(schema_id, found)

    def _call(self, method: str, path: str, what: str, **kwargs: object) -> dict:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(f"schema registry at {self.url} unreachable for {what}: {exc}") from exc
        if response.status_code >= 500:
            raise RegistryUnavailableError(
                f"schema registry at {self.url} failed for {what}: HTTP {response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise SchemaRejectedError(
                f"schema registry at {self.url} refused {what}: HTTP {response.status_code}: {message[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise RegistryUnavailableError(f"schema registry at {self.url} answered {what} with non-JSON") from exc
