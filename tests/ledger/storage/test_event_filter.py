"""The writer's filter of booked events: a ledger file refuses an event booked twice without a key.

Every test runs with the native set and with the Python set the ledger falls back to.
"""

import struct

import pytest

from ledger.errors import DuplicateEventError
from ledger.services.verify import verify
from ledger.storage import event_filter
from ledger.storage.store import Ledger
from tests.ledger.storage.test_store import batch_of

STATE = ("SELECT (SELECT count(*) FROM usage_events), (SELECT count(*) FROM accruals),"
         " (SELECT count(*) FROM ingest_batches), (SELECT max(next_offset) FROM consumer_offsets)")


@pytest.fixture(params=["native", "python"])
def ledger(request, tmp_path, license_book_text, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(event_filter, "_NativeHashes", None)
    elif event_filter._NativeHashes is None:
        pytest.skip("learnright_native is not built")
    with Ledger.open(tmp_path / "ledger.duckdb") as opened:
        opened.apply_licenses(license_book_text, "book.toml")
        opened.append_batch(batch_of(opened.load_book(), [1_000_000, 7, 9]))  # e0, e1, e2 at offsets 0-2
        yield opened


def test_a_batch_booking_a_booked_event_is_refused_whole(ledger):
    before = ledger.query(STATE)
    with pytest.raises(DuplicateEventError, match=r"booked already.*\('p', 'e1'\)"):
        ledger.append_batch(batch_of(ledger.load_book(), [5, 6], first=1, offset=3))  # e1 again, and e2
    assert ledger.query(STATE) == before
    ledger.append_batch(batch_of(ledger.load_book(), [5, 6], first=3, offset=3))
    assert ledger.scalar("SELECT count(*) FROM usage_events") == 5
    assert verify(ledger).ok


def test_an_event_twice_in_one_batch_is_refused(ledger):
    book = ledger.load_book()
    twice = batch_of(book, [5], first=7, offset=3)
    doubled = type(twice)(events=twice.events * 2, accruals=twice.accruals, offsets=twice.offsets)
    with pytest.raises(DuplicateEventError, match=r"twice in the batch.*\('p', 'e7'\)"):
        ledger.append_batch(doubled)
    ledger.append_batch(twice)


def test_a_rolled_back_batch_is_not_remembered(ledger, monkeypatch):
    batch = batch_of(ledger.load_book(), [5, 6], first=3, offset=3)
    ingest = ledger._ingest

    def fail(*args, **kwargs):
        raise RuntimeError("the disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(ingest, "_append_rows", fail)  # fails after the events were inserted and checked
        with pytest.raises(RuntimeError):
            ledger.append_batch(batch)
    ledger.append_batch(batch)  # the same events: not refused, they were never booked
    assert ledger.scalar("SELECT count(*) FROM usage_events") == 5


def test_a_hash_in_the_set_without_its_event_in_the_table_refuses_nothing(ledger):
    """A collision of two keys' 64-bit hashes: the candidate is confirmed against the table, and cleared."""
    colliding = ledger.scalar("SELECT hash('p', 'e5')")
    ledger._tip.events._seen.extend(struct.pack("<Q", colliding))  # loaded at the fixture's first batch  # as if another booked key had e5's hash
    ledger.append_batch(batch_of(ledger.load_book(), [5], first=5, offset=3))
    assert ledger.query("SELECT event_id FROM usage_events WHERE event_id = 'e5'") == [("e5",)]


def test_the_set_loaded_at_a_batch_holds_the_committed_events_only(ledger, monkeypatch):
    """Loaded inside the first batch's transaction, the set leaves that batch's own events out."""
    path = ledger.path
    ledger.close()
    with Ledger.open(path) as reopened:
        with monkeypatch.context() as patched:
            patched.setattr(reopened._ingest, "_append_rows", lambda *args, **kwargs: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                reopened.append_batch(batch_of(reopened.load_book(), [5, 6], first=3, offset=3))
        assert len(reopened._tip.events) == 3  # e0-e2; not e3 and e4, which were rolled back
        reopened.append_batch(batch_of(reopened.load_book(), [5, 6], first=3, offset=3))
        assert len(reopened._tip.events) == 5


def test_the_set_is_loaded_from_the_file_when_a_writer_opens_it(ledger):
    path = ledger.path
    ledger.close()
    with Ledger.open(path) as reopened:
        with pytest.raises(DuplicateEventError, match="booked already"):
            reopened.append_batch(batch_of(reopened.load_book(), [5], first=2, offset=3))
        assert len(reopened._tip.events) == 3
        reopened.append_batch(batch_of(reopened.load_book(), [5], first=3, offset=3))
        assert len(reopened._tip.events) == 4


def test_the_native_set_answers_as_a_python_set_across_its_merges():
    """The native set keeps most hashes in a sorted vector and merges recent ones into it; whatever
    the merges, it answers exactly as the Python set does."""
    import random

    if event_filter._NativeHashes is None:
        pytest.skip("learnright_native is not built")
    rng = random.Random(18)
    native, python = event_filter._NativeHashes(0), event_filter.PythonHashes()
    booked: list[int] = []
    for size in (70_000, 1, 200_000, 9_000, 70_000, 300_000):  # past the 65,536 recent ones, and an eighth
        added = [rng.getrandbits(64) for _ in range(size)] + rng.sample(booked, min(len(booked), 50))
        probe = added[: size // 2] + [rng.getrandbits(64) for _ in range(1_000)] + rng.sample(booked, min(len(booked), 500))
        raw = struct.pack(f"<{len(probe)}Q", *probe)
        assert native.hits(raw) == python.hits(raw)
        chunk = struct.pack(f"<{len(added)}Q", *added)
        native.extend(chunk)
        python.extend(chunk)
        booked.extend(added)
        assert len(native) == len(python) == len(set(booked))
    raw = struct.pack(f"<{len(booked)}Q", *booked)
    assert native.hits(raw) == python.hits(raw) == list(range(len(booked)))  # every booked hash is in both
