"""One settings object, read once from the environment (``LEARNRIGHT_*``) and flags.

Nested keys use ``__``: ``LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS``. The plain
``KAFKA_BOOTSTRAP_SERVERS`` is honoured too: when set, that broker is used and the
project starts none of its own.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ground.errors import ConfigError
from ground.topics import Topics


class KafkaSettings(BaseModel):
    bootstrap_servers: str | None = None
    """Broker list host:port[,host:port]; unset means the project's own broker."""
    topic_prefix: str = "learnright"
    """Prefix of every topic name; tests use one prefix per test."""
    partitions: int = Field(3, ge=1)
    """Partitions of each usage topic when the project creates it."""
    client_id: str = "learnright"
    """Client id reported to the broker."""
    replication_factor: int | None = Field(None, ge=1)
    """Replicas of each usage and dead-letter topic the project creates; unset: the cluster's
    default.replication.factor (1 on `learnright kafka up`, 3 on `kafka up --nodes 3`)."""
    min_insync_replicas: int | None = Field(None, ge=1)
    """min.insync.replicas set on each usage and dead-letter topic the project creates; unset: the
    cluster's (1 on `learnright kafka up`, 2 on `kafka up --nodes 3`)."""

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix)


class BrokerSettings(BaseModel):
    kafka_version: str = "4.4.0"
    """Apache Kafka version whose jars Maven resolves (deploy/kafka/pom.xml)."""
    cache_dir: Path = Path.home() / ".cache" / "learnright"
    """Where the jars are kept, outside the source tree."""
    state_dir: Path = Path("var/kafka")
    """Broker data, config, logs and pid file of `learnright kafka up`."""
    port: int = Field(19092, ge=0, le=65535)
    """Port `learnright kafka up` listens on (127.0.0.1), fixed so that clients know it (0: any free port)."""
    nodes: int = Field(1, ge=1, le=9)
    """Nodes `learnright kafka up` starts (--nodes): 1, a single broker; 3, a cluster whose topics keep
    3 replicas, 2 of them in sync (each node broker and controller, node i on port + i - 1)."""
    heap: str = "512m"
    """JVM heap of the broker (of each node of a cluster)."""
    start_timeout_s: float = 90.0
    """How long to wait for the broker to answer before giving up."""


class PostgresSettings(BaseModel):
    state_dir: Path = Path("var/postgres")
    """Data, config, log and state file of `learnright postgres up`, a throwaway cluster on 127.0.0.1."""
    port: int = Field(15432, ge=0, le=65535)
    """Port `learnright postgres up` listens on (127.0.0.1), fixed so that clients know it (0: any free port)."""
    database: str = Field("learnright", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """Database created for the ledger (its DuckLake catalog)."""
    user: str = Field("learnright", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """Superuser role of the cluster, trusted from 127.0.0.1 without a password."""
    bin_dir: Path | None = None
    """Where initdb, pg_ctl and psql are; unset: Debian's /usr/lib/postgresql/<newest major>/bin."""
    start_timeout_s: float = Field(60.0, gt=0)
    """How long to wait for the server to accept connections before giving up."""


_MEMORY_SIZE = r"^\s*\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\s*$"
"""A size DuckDB's memory_limit accepts (``64MB``, ``1.5GiB``)."""
_MEMORY_UNITS = {"B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30,
                 "TB": 10**12, "TiB": 2**40}


def memory_size_bytes(size: str) -> int:
    """The bytes of a size as DuckDB reads it (``64MB`` is 64,000,000; ``64MiB`` 67,108,864).

    Raises:
        ValueError: ``size`` is not such a size.
    """
    found = re.fullmatch(_MEMORY_SIZE, size)
    if found is None:
        raise ValueError(f"not a memory size such as '64MB' or '1.5GiB': {size!r}")
    number = size.strip()[:-len(found.group(2))]
    return int(float(number) * _MEMORY_UNITS[found.group(2)])


class ConsumerSettings(BaseModel):
    group_id: str = "learnright-ledger"
    """Consumer group; Kafka's committed offsets serve lag monitoring only."""
    max_batch: int = Field(98_304, ge=1)
    """Records booked as one ledger transaction: a batch closes once it holds this many
    (it may exceed them by what its last poll returned, one fetch response at most) or
    ``max_batch_bytes``, or once ``flush_interval_ms`` has passed. With two batches in flight
    it bounds the consumer's memory. A transaction that appends a full row group (122,880 rows)
    to a table has DuckDB write it compressed straight into the file instead of through the
    write-ahead log and a later checkpoint: at 98,304 records a backlog's lines (about 1.8 an
    event) go that way, and 1M events booked at 110,000-115,000/s against 78,000-80,000/s at
    32,768, with 11 us of CPU an event against 15, peaking at 390 MB against 321 MB
    (docs/benchmarks.md). A consumer that keeps up writes smaller batches whatever this is."""
    fetch_partition_bytes: int = Field(1_048_576, ge=1)
    """Bytes one fetch reads from one partition at most (Kafka's max.partition.fetch.bytes;
    a record batch larger than this still comes whole). The native fast path takes a
    fetch whole, so this also bounds how far a batch can exceed ``max_batch``."""
    max_batch_bytes: int = Field(32 * 2**20, ge=1)
    """Bytes of fetched records one batch gathers at most (it may exceed them by what its last
    poll returned): with ``max_batch`` it bounds what a batch holds in memory, so that a
    consumer holds two batches (one being written, one gathered) whatever the backlog."""
    fetch_max_bytes: int = Field(16 * 2**20, ge=1)
    """Bytes one fetch response brings at most, over all its partitions (Kafka's fetch.max.bytes;
    kafka-python's default is 50 MiB): bounds what the consumer buffers ahead of a batch."""
    ledger_memory_limit: str = Field("64MB", pattern=_MEMORY_SIZE)
    """DuckDB memory limit of the ledger the consumer writes (its buffer pool: cached blocks,
    indexes, rows of a transaction); DuckDB's own default is 80% of the machine's memory. A
    commit fills what it is given (and DuckDB's allocator keeps what it freed for about a
    second): side by side, 64MB booked as fast as 128MB and peaked 75-105 MB lower over 1M
    events, 48 MB lower over 5M (docs/benchmarks.md)."""
    checkpoint_memory_limit: str = Field("256MB", pattern=_MEMORY_SIZE)
    """DuckDB memory limit of the ledger while the consumer's own checkpoints run (between two
    batches, and at its close), ``ledger_memory_limit`` again after each. A checkpoint that merges
    small row groups needs more than a commit, and DuckDB invalidates the whole database when a
    checkpoint cannot allocate (a FATAL error: the process must reopen the ledger). At 64MB a
    merging checkpoint of a consumer following about 21,000 events/s failed so
    (docs/benchmarks.md, "A checkpoint that ran out of memory")."""
    ledger_threads: int = Field(1, ge=1)
    """DuckDB threads of the ledger the consumer writes (DuckDB's own default: one per core).
    With 1, each statement runs on the thread that issued it, the writer thread, while the
    polling thread decodes and prices on the other core; with more, DuckDB's Python client
    waits for its worker threads by spinning, which cost about a third of ingest's CPU on
    2 cores (docs/benchmarks.md). It applies to the whole process's use of that ledger while the
    consumer runs (in `learnright serve`, its closes too); the consumer's close restores DuckDB's."""
    checkpoint_wal_bytes: int = Field(256 * 2**20, ge=1)
    """Bytes of write-ahead log the consumer's ledger holds before a commit checkpoints it
    (DuckDB's ``checkpoint_threshold``, whose default of 16 MiB a full-speed batch passes, so that
    nearly every commit checkpointed). Checkpointing every 256 MiB instead took about a third
    less CPU per event while behind (docs/benchmarks.md); it also bounds the log a restart
    replays. The consumer's close restores DuckDB's (:mod:`consumers.checkpoints`)."""
    caught_up_checkpoint_wal_bytes: int = Field(4 * 2**20, ge=0)
    """Once the consumer has caught up with Kafka, its writer checkpoints between two batches as
    soon as the write-ahead log holds more than this: short checkpoints while it keeps up (the
    next batch waits for each; they merge no row groups, which a pause in traffic, the close, or
    every ``checkpoint_wal_bytes`` of log does), the large ones of ``checkpoint_wal_bytes`` only
    while it is behind (:mod:`consumers.checkpoints`). Without the merge a checkpoint costs about
    what its rows cost, so a small one stalls the next batch least: 4 MiB took about 0.11 s of CPU,
    16 MiB 0.2-0.3 s, and had the lower p99 side by side (docs/benchmarks.md, "Latency")."""
    max_poll: int = Field(5000, ge=1)
    """Records (or whole fetches, on the native fast path) one Kafka poll returns at most."""
    flush_interval_ms: int = Field(500, ge=1)
    """Longest a batch gathers polls before it is booked: bounds latency when traffic is light."""
    idle_timeout_s: float = 10.0
    """`consume --until-idle` gives up waiting for a first assignment after this."""
    native: bool = True
    """Book the common case through the native fast path (same result; off: Python only)."""
    max_future_s: int = Field(3600, ge=0)
    """Seconds an event's occurred_at may lie after its Kafka record's timestamp; a later one is quarantined."""
    max_attributions: int = Field(256, ge=1)
    """Sources one inference answer (or correction) may name; a longer one is quarantined."""


class CloseSettings(BaseModel):
    memory_limit: str = Field("256MB", pattern=_MEMORY_SIZE)
    """DuckDB memory limit of the ledger while a close builds and stores its statements (set after
    the license book is read, the limit before restored after); past it DuckDB spills the close's
    uncommitted statement rows and sorted lines to ``<ledger>.tmp``. At 100,000 statements (250,000
    licenses) the close peaked at 0.9 GB with 256MB, 1.5 GB with DuckDB's default (80% of the
    machine's memory), 0.7 GB with 128MB, which spilled more and took about a quarter longer
    (docs/benchmarks.md). A close that runs out of memory under it stores nothing, logs a warning
    and runs again once under DuckDB's default (docs/statements.md)."""
    workers: int | None = Field(None, ge=1)
    """Worker processes that build, render and sign a close's statements (the same bytes with any
    number; ``ledger.services.statement_workers``). Unset: one per core for a month of 5M covered
    entries or more, none below (at 1M they cost time and memory, at 11M they saved 40% of the
    time for 350 MB more: docs/benchmarks.md). 1: never; the close's own process builds them."""


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    """Address the HTTP API binds; loopback by default, put a TLS proxy in front to expose it."""
    port: int = Field(8080, ge=0, le=65535)
    """Port of the HTTP API (0: any free port)."""
    max_body_bytes: int = Field(2**20, ge=0)
    """Bytes a request body may hold; a larger one is answered 413 before (or while) it is read."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A request's line and headers must arrive within this many seconds of their first byte
    (or of the connection opening); else the connection is closed."""
    body_timeout_s: float = Field(30.0, gt=0)
    """A request's body must arrive within this many seconds of its headers; else 408 and the connection closes."""
    keep_alive_s: float = Field(5.0, gt=0)
    """An idle connection between two requests is closed after this many seconds."""


class SqlSettings(BaseModel):
    time_limit_s: float = Field(10.0, gt=0)
    """An auditor query is interrupted after this many seconds."""
    row_limit: int = Field(100_000, ge=1)
    """Rows an auditor query returns at most; the result says when it was cut."""
    memory_limit: str = "1GB"
    """DuckDB memory limit of an auditor query's connection."""
    max_result_bytes: int = Field(64 * 2**20, ge=1)
    """Bytes an auditor query's result (and its rendered answer) may hold; a larger one is refused."""
    threads: int = Field(1, ge=1)
    """DuckDB threads of one auditor query: one leaves the other core to ingest while it runs."""
    nice: int = Field(10, ge=0, le=19)
    """How far below the service's threads an auditor query's thread runs (Linux nice, per thread): it takes
    the CPU ingest leaves idle. 0 runs queries at the service's priority."""
    max_concurrent: int = Field(2, ge=1)
    """Auditor queries the HTTP API runs at once; one more is answered 429 with Retry-After."""
    max_query_bytes: int = Field(256 * 2**10, ge=1)
    """Bytes an auditor query's text may hold (UTF-8); a longer one is refused before it is parsed."""
    temp_directory: Path = Path("var/sql-spill")
    """Where DuckDB spills an auditor query's large sort or DISTINCT; kept apart from published snapshots."""
    max_temp_bytes: str = "4GB"
    """Disk an auditor query may spill to (DuckDB's max_temp_directory_size); past it the query is refused."""


MAX_SOCKET_PATH = 100
"""Bytes a unix socket's path may hold here (Linux allows 107; macOS 103)."""


def admin_runtime_dir() -> Path:
    """This user's private directory for admin sockets that do not fit beside their ledger:
    ``$XDG_RUNTIME_DIR/learnright`` where the session has one, else ``<tmp>/learnright-<uid>``
    (mode 0700, as tmux and ssh keep theirs; :func:`ensure_admin_runtime_dir` makes and checks it)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "learnright"
    return Path(tempfile.gettempdir()) / f"learnright-{os.getuid()}"


def default_admin_socket(db: Path) -> Path:
    """Where the running service's admin socket is when ``admin.socket`` is unset.

    ``<db>.admin.sock`` beside the ledger; when that path is too long for a unix socket (a
    ledger deep in a directory tree), ``admin-<digest>.sock`` in :func:`admin_runtime_dir`,
    the digest being of the ledger's absolute path, so the service and every CLI command on
    the same ledger find the same socket without configuration.
    """
    beside = db.with_name(db.name + ".admin.sock")
    if len(os.fsencode(beside.absolute())) <= MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha256(os.fsencode(db.resolve())).hexdigest()[:20]
    return admin_runtime_dir() / f"admin-{digest}.sock"


def ensure_admin_runtime_dir(socket: Path) -> None:
    """Makes sure that a socket in :func:`admin_runtime_dir` sits in a directory only this user
    can enter, creating it (0700) if need be; a socket elsewhere is left to its own directory.

    Checked by the service before it binds and by a client before it connects, so nobody else
    can put a socket where a command would send an admin operation.

    Raises:
        ConfigError: the directory is not this user's, is not a directory, or others can enter it.
    """
    directory = admin_runtime_dir()
    if socket.parent != directory:
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = directory.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise ConfigError(f"admin socket directory {directory} must be a directory of this user's with mode 0700"
                          f" (it is owned by uid {found.st_uid}, mode {stat.S_IMODE(found.st_mode):o}); remove it,"
                          " or set LEARNRIGHT_ADMIN__SOCKET")


class LedgerSettings(BaseModel):
    url: str | None = None
    """A lake instead of the file ``db``: ``ducklake:postgres:dbname=... host=... port=...`` (a DuckLake
    catalog in PostgreSQL, several writers); unset: the embedded DuckDB file ``db``."""
    data_path: Path | None = None
    """Where a lake's Parquet files are: a path every writer shares (required with ``url``)."""

    @model_validator(mode="after")
    def _lake_needs_data(self) -> "LedgerSettings":
        if self.url is not None:
            if not self.url.startswith("ducklake:"):
                raise ValueError(f"ledger.url must start with 'ducklake:' (ducklake:postgres:dbname=... host=...);"
                                 f" got {mask_secrets(self.url)!r}")
            if self.data_path is None:
                raise ValueError("ledger.url names a lake, so ledger.data_path (LEARNRIGHT_LEDGER__DATA_PATH) must"
                                 " say where its Parquet files are")
        return self


def mask_secrets(url: str) -> str:
    """A connection string fit for messages and logs: any ``password=`` value is masked."""
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)


@dataclass(frozen=True)
class LakeLocation:
    """A DuckLake ledger: its catalog (``ducklake:postgres:<libpq string>``) and its Parquet data path."""

    url: str
    data_path: Path

    def __str__(self) -> str:
        return f"{mask_secrets(self.url)} (data {self.data_path})"

    @property
    def catalog_dsn(self) -> str | None:
        """The libpq string of a PostgreSQL catalog (what the cluster-wide locks connect to); None otherwise."""
        prefix = "ducklake:postgres:"
        return self.url[len(prefix):] if self.url.startswith(prefix) else None


class AdminSettings(BaseModel):
    socket: Path | None = None
    """Unix socket of the running service's admin interface (mode 0600); unset: ``<db>.admin.sock`` beside the ledger."""
    timeout_s: float = Field(600.0, gt=0)
    """How long a CLI command waits for the service to run it (a close first books what Kafka holds)."""


class SnapshotSettings(BaseModel):
    keep_last: int = Field(5, ge=1)
    """Newest snapshots kept; older ones are pruned after each publish, except the first that covers each close."""
    watch_interval_s: float = Field(1.0, gt=0, le=60)
    """How often `learnright serve` looks for a new close to publish a snapshot of."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNRIGHT_", env_nested_delimiter="__", extra="ignore")

    db: Path = Path("var/ledger.duckdb")
    """The ledger file."""
    statements_dir: Path = Path("var/statements")
    """Where statement files are written."""
    signing_key: Path = Path("var/keys/statements-ed25519.pem")
    """Ed25519 private key (PEM) that signs statements; created with mode 0600 on first use."""
    grace_days: int = Field(3, ge=1, le=28)
    """Month M closes at 00:00 UTC on this day of month M+1."""
    schema_registry_url: str | None = None
    """Confluent-compatible schema registry; when set, Confluent-framed records are read (and emit writes them)."""
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    postgres: PostgresSettings = PostgresSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    close: CloseSettings = CloseSettings()
    http: HttpSettings = HttpSettings()
    sql: SqlSettings = SqlSettings()
    snapshots_dir: Path = Path("var/snapshots")
    """Where read-only snapshots of the ledger are published for auditors."""
    snapshots: SnapshotSettings = SnapshotSettings()
    admin: AdminSettings = AdminSettings()
    ledger: LedgerSettings = LedgerSettings()

    @property
    def ledger_at(self) -> "Path | LakeLocation":
        """Where the ledger is: the file :attr:`db`, or the lake of ``ledger.url`` when that is set."""
        if self.ledger.url is not None:
            assert self.ledger.data_path is not None  # LedgerSettings refuses a lake without one
            return LakeLocation(url=self.ledger.url, data_path=self.ledger.data_path)
        return self.db

    @property
    def admin_socket(self) -> Path:
        """The admin socket of the service that runs on :attr:`db` (``admin.socket``, or beside the ledger)."""
        return self.admin.socket if self.admin.socket is not None else default_admin_socket(self.db)

    @model_validator(mode="after")
    def _plain_bootstrap(self) -> "Settings":
        if self.kafka.bootstrap_servers is None and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            self.kafka.bootstrap_servers = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return self
