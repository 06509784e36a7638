"""The layers hold: the pure core loads alone, and the import-linter contracts are kept.

The first test proves what ``ledger/core`` promises: it, ``ledger.errors``, the ground it
stands on and the wire contract import in a Python where DuckDB, Arrow, Kafka, the HTTP
stack and the native build are missing (and the check itself names a module that is not
pure). The last runs ``lint-imports`` so that plain ``pytest`` catches an arrow pointing
the wrong way, not only ``make test``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What the pure core must do without (the forbidden modules of the "pure-core" contract).
MISSING = ("duckdb", "pyarrow", "kafka", "fastapi", "uvicorn", "starlette", "learnright_native")

# Pure packages: every module under them is imported. Pure modules: imported one by one.
PURE_PACKAGES = ("ledger.core", "schemas")
PURE_MODULES = ("ledger.errors", "ground.errors", "ground.settings", "ground.topics")

# Run in a fresh interpreter: argv is (missing packages, pure packages, pure modules), each
# comma-separated, and the project root. Exits 1 after naming every module that did not
# import, why, and the chain of project lines that led there.
_LOAD_ALONE = r'''
import importlib
import pkgutil
import sys
import traceback

missing, packages, modules = (frozenset(arg.split(",")) - {""} for arg in sys.argv[1:4])
root = sys.argv[4].rstrip("/") + "/"


class Missing:
    """A finder that makes the listed top-level packages look not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in missing:
            raise ImportError(f"No module named {name!r} (hidden by tests/test_layers.py)", name=name)
        return None


sys.meta_path.insert(0, Missing())
preloaded = sorted(name for name in sys.modules if name.partition(".")[0] in missing)
if preloaded:
    sys.exit(f"already imported before the finder was installed: {preloaded}")

failures = []


def load(name):
    try:
        return importlib.import_module(name)
    except Exception as exc:
        ours = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(root)]
        chain = " -> ".join(f"{f.filename.removeprefix(root)}:{f.lineno}" for f in ours)
        failures.append(f"{name}: {type(exc).__name__}: {exc}\n    via {chain}")
        return None


names = set(modules)
for package in sorted(packages):
    loaded = load(package)
    if loaded is not None:
        names.update(info.name for info in pkgutil.walk_packages(loaded.__path__, package + ".", onerror=load))
for name in sorted(names):
    load(name)
if failures:
    sys.exit(f"{len(failures)} module(s) did not import without {sorted(missing)}:\n" + "\n".join(failures))
print("\n".join(sorted(names | packages)))
'''


def load_alone(*, packages: tuple[str, ...] = (), modules: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Imports ``packages`` (every module under them) and ``modules`` in a Python without MISSING."""
    return subprocess.run(
        [sys.executable, "-c", _LOAD_ALONE, ",".join(MISSING), ",".join(packages), ",".join(modules), str(ROOT)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_the_pure_core_imports_without_duckdb_arrow_kafka_http_or_the_native_build():
    result = load_alone(packages=PURE_PACKAGES, modules=PURE_MODULES)

    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    # pkgutil found the core's modules (a silently empty walk would prove nothing).
    assert {"ledger.core.money", "ledger.core.pricing", "ledger.core.statements", "schemas.wire"} <= loaded
    assert set(PURE_MODULES) <= loaded


def test_the_check_names_a_module_that_needs_a_missing_package():
    result = load_alone(modules=("ground.errors", "ledger.storage.sql"))

    assert result.returncode == 1
    assert "ledger.storage.sql:" in result.stderr
    assert "No module named 'duckdb'" in result.stderr
    assert "ground.errors:" not in result.stderr


def test_imports_keep_the_import_linter_contracts():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), f"{lint_imports} is missing: install the dev tools (pip install -e '.[dev]')"

    result = subprocess.run([str(lint_imports), "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
