"""Kubernetes JSON schemas for kubeconform, made offline from the API's own OpenAPI document.

kubeconform normally downloads its schemas from GitHub (yannh/kubernetes-json-schema). Here
they are derived from ``api/openapi-spec/swagger.json`` of the ``k8s.io/kubernetes`` Go
module, which the Go module proxy serves at a pinned version (``make kubeconform`` fetches
it with ``go mod download``). Each kind gets one self-contained file, named as kubeconform's
``{{ .ResourceKind }}{{ .KindSuffix }}.json`` template expects, holding the definitions it
reaches. The schemas are strict as yannh's ``-strict`` ones are: an object with declared
properties refuses any other; ``IntOrString`` takes a string or an integer and ``Quantity``
a string or a number, as the API server does.

Usage: python deploy/k8s/json_schemas.py SWAGGER_JSON OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
PREFIX = "#/definitions/"


def strict(node):
    """A copy of ``node`` where every object with declared properties refuses undeclared ones."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def refs(node) -> set[str]:
    if isinstance(node, list):
        return set().union(*map(refs, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"][len(PREFIX):]} if isinstance(node.get("$ref"), str) else set()
    return found.union(*map(refs, node.values())) if node else found


def closure(name: str, definitions: dict) -> dict:
    """``name`` and every definition it reaches through ``$ref``."""
    seen: dict = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen[current] = definitions[current]
        todo.extend(refs(definitions[current]) - seen.keys())
    return seen


def file_name(group: str, version: str, kind: str) -> str:
    """kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json``: ``statefulset-apps-v1.json``, ``service-v1.json``."""
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def main(swagger_path: str, out_dir: str) -> int:
    definitions = json.loads(Path(swagger_path).read_text())["definitions"]
    definitions = {name: strict(schema) for name, schema in definitions.items()}
    definitions[INT_OR_STRING] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    definitions[QUANTITY] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for name, schema in sorted(definitions.items()):
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            target = file_name(gvk["group"], gvk["version"], gvk["kind"])
            if target in written:
                continue  # two groups with the same first label: the first one wins
            document = {"$ref": PREFIX + name, "definitions": closure(name, definitions)}
            (out / target).write_text(json.dumps(document, sort_keys=True))
            written.add(target)
    print(f"{len(written)} schemas in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
