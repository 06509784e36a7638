"""What every benchmark of `make bench` prints and writes: one line per figure, one report section each.

A figure is a :class:`Figure`; its line is ``bench NAME ratio=R rate=N/s`` followed by any
extra measures (``rss_mb=``, ``bytes_per_event=``, ``seconds=``) in a fixed order, so the
lines of two runs diff cleanly. Each benchmark owns one section of docs/benchmarks.md,
between ``<!-- bench:NAME begin -->`` and ``<!-- bench:NAME end -->``, and rewrites only that;
text around the markers (profiles, notes written by hand) stays.
"""

from __future__ import annotations

import os
import platform
import resource
from dataclasses import dataclass, field
from pathlib import Path


def process_cpu_seconds() -> float:
    """CPU time this process has used so far, every thread (DuckDB's included), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One measured figure: a rate and its ratio to a baseline measured in the same run.

    ``extra`` holds further measures of the same run, printed after the rate as
    ``key=value`` in the order given (values already formatted).
    """

    name: str
    ratio: float
    rate: float
    unit: str = "/s"
    extra: tuple[tuple[str, str], ...] = field(default=())

    def line(self) -> str:
        tail = "".join(f" {key}={value}" for key, value in self.extra)
        return f"bench {self.name} ratio={self.ratio:.2f} rate={self.rate:.0f}{self.unit}{tail}"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} begin -->", f"<!-- bench:{name} end -->"


def machine() -> str:
    """The machine a figure was measured on, as the report names it."""
    uname = platform.uname()
    return f"{uname.system} {uname.release} {uname.machine}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(path: Path, name: str, body: str) -> None:
    """Replaces the section ``name`` of ``path`` with ``body``, or appends it; the rest of the file stays.

    The section ends up as ``begin marker, body, end marker``; a file without the markers
    gets the section at its end (created when missing).
    """
    begin, end = markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text[text.index(begin):]:
        start = text.index(begin)
        stop = text.index(end, start) + len(end)
        text = text[:start] + block + text[stop:]
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
