"""DuckDB extensions loaded from their PyPI wheels (``duckdb-extension-*``), never from the network.

DuckDB would download an extension it does not find from its extension server; the ledger
never lets it: autoinstall and autoload are off on every lake connection, and each
extension is loaded by the path of the file its wheel installed, which must match the
running DuckDB's version (the wheels are pinned with DuckDB in requirements.lock).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb

from ledger.errors import LedgerFileError

WHEELS = {"ducklake": "duckdb_extension_ducklake", "postgres_scanner": "duckdb_extension_postgres_scanner"}
"""Each extension the lake needs, and the Python package its wheel installs."""

OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
"""DuckDB settings that keep it from fetching an extension on its own."""


def extension_file(name: str) -> Path:
    """The extension file of ``name`` for the running DuckDB, from its installed wheel.

    Raises:
        LedgerFileError: the wheel is not installed, or holds no build for this DuckDB.
    """
    package = WHEELS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise LedgerFileError(f"DuckDB extension {name!r} needs the package {package.replace('_', '-')}"
                              f" (pip install {package.replace('_', '-')}=={duckdb.__version__})") from exc
    found = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not found.exists():
        built = sorted(p.name for p in (Path(module.__file__).parent / "extensions").iterdir())
        raise LedgerFileError(f"{package.replace('_', '-')} holds builds of {name!r} for DuckDB {built}, not for the"
                              f" installed DuckDB v{duckdb.__version__}; install the versions in requirements.lock")
    return found


def load(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Loads each extension of ``names`` into ``con`` from its wheel."""
    for name in names:
        con.execute(f"LOAD '{extension_file(name)}'")
