"""`make bench-scale`: ingest into one ledger file, a lake with one writer and a lake with two.

The three book the same records of the same topics in the same run, in turn, each round in
fresh ledgers under fresh consumer groups. Every variant runs as `learnright consume
--until-idle` processes (one, one, two), timed from their start to the last one's exit,
so each pays the same process start and group join; the two writers share the partitions
through their consumer group and take their row numbers and locks from the lake's
PostgreSQL catalog (:mod:`ledger.storage.lake`). Ratios are throughput over the single
file's. Nothing here is a test: no figure is asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from ground.settings import LakeLocation, Settings
from learnright.bench import LICENSES, BenchError, BenchResult, _tail, check_booked, filled_topics, settings_environment

SCALE_PARTITIONS = 4
"""Partitions of each usage topic: enough for two writers to hold several each."""

BEGIN, END = "<!-- bench-scale: begin -->", "<!-- bench-scale: end -->"
"""The markers of the part of docs/scaling.md that `make bench-scale` rewrites."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    name: str
    writers: int
    lake: bool


VARIANTS = (Variant(name="ingest-file", writers=1, lake=False),
            Variant(name="ingest-lake-1-writer", writers=1, lake=True),
            Variant(name="ingest-lake-2-writers", writers=2, lake=True))


@contextmanager
def postgres_server(workdir: Path, dsn: str | None = None) -> Iterator[str]:
    """The server of ``dsn``, or a throwaway PostgreSQL (Debian's package) under ``workdir``: yields its connection string."""
    if dsn is not None:
        yield dsn
        return
    from learnright import postgres

    state_dir = workdir / "postgres"
    state = postgres.up(state_dir)
    try:
        yield state.dsn
    finally:
        postgres.down(state_dir)


def new_lake(dsn: str, workdir: Path) -> LakeLocation:
    """A fresh catalog database on the server of ``dsn``, with its data under ``workdir``."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    server = re.sub(r"\bdbname=\S+", "", dsn).strip()
    return LakeLocation(url=f"ducklake:postgres:dbname={name} {server}", data_path=workdir / name)


def consume_round(settings: Settings, variant: Variant, events: int, workdir: Path, dsn: str) -> float:
    """Seconds ``variant``'s processes take to book ``events`` records into a fresh ledger.

    Raises:
        BenchError: a process failed or hung, or the ledger holds another number of events.
    """
    from ledger.storage.store import Ledger

    group = f"scale-{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEARNRIGHT_LEDGER__")}
    # A writer waits for its partitions as long as the run may take: on a loaded machine a
    # group of lake writers can take longer than the default 10 s to be handed them.
    env.update(settings_environment(settings.model_copy(update={
        "consumer": settings.consumer.model_copy(update={
            "group_id": group, "idle_timeout_s": max(settings.consumer.idle_timeout_s, 120.0)})})))
    if variant.lake:
        where: Path | LakeLocation = new_lake(dsn, workdir)
        env.update(LEARNRIGHT_LEDGER__URL=where.url, LEARNRIGHT_LEDGER__DATA_PATH=str(where.data_path))
    else:
        where = workdir / f"{group}.duckdb"
        env["LEARNRIGHT_DB"] = str(where)
    with Ledger.open(where) as ledger:
        ledger.apply_licenses(LICENSES.read_text(), "examples/licenses.toml")
    timeout_s = 120 + events / 500
    started = time.perf_counter()
    children = [subprocess.Popen([str(Path(sys.executable).with_name("learnright")), "consume", "--until-idle"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(variant.writers)]
    try:
        outputs = [child.communicate(timeout=max(1.0, timeout_s - (time.perf_counter() - started)))
                   for child in children]
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{variant.name} had not booked {events} events after {timeout_s:.0f}s") from exc
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    elapsed = time.perf_counter() - started
    for child, (_, stderr) in zip(children, outputs):
        if child.returncode != 0:
            raise BenchError(f"a writer of {variant.name} failed (exit {child.returncode}): {_tail(stderr)}")
    with Ledger.open(where, read_only=True) as ledger:
        check_booked(ledger, events, variant.name)
    return elapsed


def run_scale(settings: Settings, *, events: int, rounds: int, report: Path | None,
              echo: Callable[[str], None] = print, postgres_dsn: str | None = None) -> tuple[BenchResult, ...]:
    """Runs every variant ``rounds`` times in turn; prints one ``bench`` line each (best round).

    ``postgres_dsn`` names a server to create the lakes' catalogs on; without it one is started.
    """
    workdir = Path(tempfile.mkdtemp(prefix="learnright-bench-scale-"))
    workdir.chmod(0o755)  # as root, PostgreSQL runs as Debian's postgres user, which must enter it
    try:
        with filled_topics(settings, workdir, events, echo, partitions=SCALE_PARTITIONS) as filled, \
                postgres_server(workdir, postgres_dsn) as dsn:
            seconds: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
            for n in range(rounds):
                for variant in VARIANTS:
                    seconds[variant.name].append(consume_round(filled, variant, events, workdir, dsn))
                echo(f"round {n + 1}: " + ", ".join(f"{name} {events / s[-1]:,.0f}/s" for name, s in seconds.items()))
        baseline = min(seconds[VARIANTS[0].name])
        results = tuple(BenchResult(name=v.name, events=events, seconds=min(seconds[v.name]), baseline_seconds=baseline)
                        for v in VARIANTS)
        for result in results:
            echo(result.line())
        if report is not None:
            write_scale_report(report, results, rounds, spread={
                name: (events / max(s), events / min(s)) for name, s in seconds.items()})
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def write_scale_report(path: Path, results: tuple[BenchResult, ...], rounds: int,
                       spread: dict[str, tuple[float, float]]) -> None:
    """Rewrites the measured part of ``path`` (between :data:`BEGIN` and :data:`END`); the rest stays."""
    rows = "\n".join(f"| {r.name} | {r.events:,} | {r.ratio:.2f} | {r.rate:,.0f}/s |"
                     f" {spread[r.name][0]:,.0f}–{spread[r.name][1]:,.0f}/s |" for r in results)
    block = f"""{BEGIN}
Written by `make bench-scale` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC) on {os.cpu_count()} cores: the best of
{rounds} rounds, each variant booking the same {results[0].events:,} records ({SCALE_PARTITIONS} partitions per usage
topic) into fresh ledgers, timed from process start to the last writer's exit.

| variant | events | ratio to the file | rate (best) | rate (worst–best) |
| --- | --- | --- | --- | --- |
{rows}
{END}"""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    path.write_text(text)
