"""The writer thread: jobs in order, one at a time, and a failure reaches the caller."""

import threading

import pytest

from consumers.writer import BatchWriter


def test_jobs_run_in_order_on_one_thread():
    writer = BatchWriter()
    seen: list[tuple[int, str]] = []
    for n in range(50):
        writer.submit(lambda n=n: seen.append((n, threading.current_thread().name)))
    writer.drain()
    writer.close()
    assert [n for n, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"ledger-writer"}


def test_a_failed_job_stops_later_ones_and_is_raised_to_the_caller():
    writer = BatchWriter()
    ran: list[int] = []
    gate = threading.Event()
    writer.submit(gate.wait)

    def fail() -> None:
        raise RuntimeError("the ledger refused batch 2")

    writer.submit(fail)
    gate.set()
    writer.wait()
    with pytest.raises(RuntimeError, match="refused batch 2"):
        writer.submit(lambda: ran.append(3))
    with pytest.raises(RuntimeError, match="refused batch 2"):  # and stays failed: carrying on would skip a batch
        writer.drain()
    assert ran == []
    writer.close()


def test_submit_blocks_while_a_job_waits_behind_the_running_one():
    writer = BatchWriter()
    gate = threading.Event()
    writer.submit(gate.wait)  # running
    writer.submit(lambda: None)  # waiting
    third = threading.Thread(target=writer.submit, args=(lambda: None,))
    third.start()
    third.join(timeout=0.2)
    assert third.is_alive()  # bounded: no third batch is held in memory
    gate.set()
    third.join(timeout=5)
    assert not third.is_alive()
    writer.drain()
    writer.close()
