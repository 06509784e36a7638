"""`make schema-check`: every schema version must be fully compatible with every earlier one.

A record on a topic lives longer than the code that wrote it, and consumers and
producers upgrade at different times. So each version of a record must read data of
every earlier version (backward) and every earlier version must read its data
(forward): FULL_TRANSITIVE in schema-registry terms. The pairwise check is Apache
Avro's own reader/writer compatibility checker (``avro.compatibility``, the Python port
of Java's ``org.apache.avro.SchemaCompatibility``), not a rule set of ours. On top of
it, two house rules of the contract: every record and field carries a ``doc``, and a
version directory must not hold a byte-identical copy of an earlier version.

Run ``python -m schemas.compatibility [ROOT]``; exits 1 and lists every problem.
This is a build-time check: it needs the ``avro`` package of the ``dev`` extra.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ground.errors import ConfigError
from schemas.catalog import SCHEMA_DIR, Catalog, SchemaVersion


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One reason a schema version may not ship."""

    name: str
    version: int
    message: str

    def __str__(self) -> str:
        return f"{self.name} v{self.version}: {self.message}"


def check_catalog(root: Path = SCHEMA_DIR) -> tuple[Problem, ...]:
    """Every problem of every version under ``root``, oldest record first; empty when fine.

    Raises:
        ConfigError: a schema file does not parse, or ``avro`` is not installed.
    """
    try:
        import avro.errors
        import avro.schema
        from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
    except ImportError as exc:
        raise ConfigError("the schema check needs the avro package: pip install -e '.[dev]'") from exc

    catalog = Catalog(root)
    problems: list[Problem] = []
    for name in catalog.names():
        versions = catalog.versions(name)
        apache = {}
        for version in versions:
            try:
                apache[version.version] = avro.schema.parse(version.path.read_text())
            except avro.errors.AvroException as exc:
                raise ConfigError(f"{version.path} is not a valid Avro schema: {exc}") from exc
            problems.extend(_undocumented(version))
        for index, new in enumerate(versions):
            for old in versions[:index]:
                if new.fingerprint == old.fingerprint:
                    problems.append(Problem(name=name, version=new.version,
                                            message=f"is identical to v{old.version}; drop the copy"))
                    continue
                for direction, reader, writer in (
                    ("backward", new, old),  # new code reads old data
                    ("forward", old, new),   # old code reads new data
                ):
                    result = ReaderWriterCompatibilityChecker().get_compatibility(
                        reader=apache[reader.version], writer=apache[writer.version])
                    if result.compatibility is not SchemaCompatibilityType.compatible:
                        details = (
                            f"{', '.join(sorted({k.value for k in result.incompatibilities}))}"
                            f" ({', '.join(sorted(map(str, result.messages)))}"
                            f" at {', '.join(sorted(result.locations))})"
                        )
                        problems.append(Problem(
                            name=name, version=new.version,
                            message=f"not {direction} compatible with v{old.version}"
                                    f" (v{reader.version} cannot read data written with v{writer.version}): {details}",
                        ))
    return tuple(problems)


def _undocumented(version: SchemaVersion) -> list[Problem]:
    raw = json.loads(version.path.read_text())
    missing = [] if raw.get("doc") else ["the record"]
    missing += [f"field {f['name']}" for f in raw.get("fields", ()) if not f.get("doc")]
    return [Problem(name=version.name, version=version.version, message=f"{m} has no doc") for m in missing]


def main(argv: list[str] | None = None) -> int:
    """Prints a verdict per record, or every problem; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else SCHEMA_DIR
    try:
        problems = check_catalog(root)
    except ConfigError as exc:
        print(f"schema-check: {exc}", file=sys.stderr)
        return 2
    if problems:
        for problem in problems:
            print(f"schema-check: {problem}", file=sys.stderr)
        print(f"schema-check: {len(problems)} problems in {root}", file=sys.stderr)
        return 1
    catalog = Catalog(root)
    for name in catalog.names():
        versions = ", ".join(f"v{s.version}" for s in catalog.versions(name))
        print(f"schema-check: {name} {versions}: each fully compatible with every earlier version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
