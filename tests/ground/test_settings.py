"""Where a ledger's admin socket is by default, and the private directory of the long-path case."""

import os
import stat

import pytest

from ground.errors import ConfigError
from ground.settings import MAX_SOCKET_PATH, admin_runtime_dir, default_admin_socket, ensure_admin_runtime_dir


def deep(tmp_path, name="ledger.duckdb"):
    directory = tmp_path / ("d" * 40) / ("e" * 40)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def test_the_socket_sits_beside_a_ledger_whose_path_leaves_room_for_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "l.duckdb"
    assert len(os.fsencode(db)) + len(".admin.sock") <= MAX_SOCKET_PATH
    assert default_admin_socket(db) == tmp_path / "l.duckdb.admin.sock"


def test_a_ledger_too_deep_for_a_socket_beside_it_gets_one_in_the_users_runtime_directory(tmp_path, monkeypatch,
                                                                                          run_dir):
    db = deep(tmp_path)
    socket = default_admin_socket(db)
    assert socket.parent == admin_runtime_dir() == run_dir / "learnright"
    assert len(os.fsencode(socket)) <= MAX_SOCKET_PATH
    monkeypatch.chdir(db.parent.parent)  # the same file named relatively: the same socket
    assert default_admin_socket(db.relative_to(db.parent.parent)) == socket
    assert default_admin_socket(db.with_name("other.duckdb")) != socket


def test_without_a_session_runtime_directory_it_is_a_per_user_one_in_tmp(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert admin_runtime_dir().name == f"learnright-{os.getuid()}"


def test_the_runtime_directory_is_made_private_and_refused_when_others_can_enter_it(tmp_path, run_dir):
    socket = default_admin_socket(deep(tmp_path))
    ensure_admin_runtime_dir(socket)
    assert stat.S_IMODE(admin_runtime_dir().stat().st_mode) == 0o700
    admin_runtime_dir().chmod(0o755)
    with pytest.raises(ConfigError, match=r"admin socket directory .*/learnright must be a directory of this"
                                          r" user's with mode 0700 \(it is owned by uid \d+, mode 755\)"):
        ensure_admin_runtime_dir(socket)
    ensure_admin_runtime_dir(tmp_path / "elsewhere.sock")  # a socket outside it is its directory's business


def test_the_close_memory_limit_is_256mb_unless_set_and_a_value_that_is_not_a_size_is_refused(monkeypatch):
    from pydantic import ValidationError

    from ground.settings import Settings

    monkeypatch.delenv("LEARNRIGHT_CLOSE__MEMORY_LIMIT", raising=False)
    assert Settings().close.memory_limit == "256MB"
    monkeypatch.setenv("LEARNRIGHT_CLOSE__MEMORY_LIMIT", "512MiB")
    assert Settings().close.memory_limit == "512MiB"
    monkeypatch.setenv("LEARNRIGHT_CLOSE__MEMORY_LIMIT", "64MB'; DROP")
    with pytest.raises(ValidationError, match=r"close\.memory_limit"):
        Settings()


def test_a_memory_size_is_read_in_bytes_as_duckdb_reads_it():
    from ground.settings import memory_size_bytes

    assert memory_size_bytes("64MB") == 64_000_000
    assert memory_size_bytes(" 1.5GiB ") == 3 * 2**29
    assert memory_size_bytes("256 MB") == 256_000_000
    with pytest.raises(ValueError, match="'64 apples'"):
        memory_size_bytes("64 apples")
