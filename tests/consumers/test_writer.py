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
    writer = BatchWriter(waiting=1)
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


def test_submit_blocks_while_a_job_runs_so_at_most_two_batches_are_held():
    writer = BatchWriter()
    assert writer.capacity == 1
    gate = threading.Event()
    writer.submit(gate.wait)  # running
    second = threading.Thread(target=writer.submit, args=(lambda: None,))
    second.start()
    second.join(timeout=0.2)
    assert second.is_alive()  # bounded: the caller keeps its batch until the running one is written
    gate.set()
    second.join(timeout=5)
    assert not second.is_alive()
    writer.drain()
    writer.close()


def test_a_writer_may_let_jobs_wait_behind_the_running_one_up_to_its_bound():
    writer = BatchWriter(waiting=1)
    gate = threading.Event()
    writer.submit(gate.wait)  # running
    writer.submit(lambda: None)  # waiting
    third = threading.Thread(target=writer.submit, args=(lambda: None,))
    third.start()
    third.join(timeout=0.2)
    assert third.is_alive()
    gate.set()
    third.join(timeout=5)
    assert not third.is_alive()
    writer.drain()
    writer.close()
    with pytest.raises(ValueError, match=r"waiting jobs must be >= 0 \(got -1\)"):
        BatchWriter(waiting=-1)
