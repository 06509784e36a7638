"""A real single-node Apache Kafka broker (KRaft), run from jars Maven resolves.

The jars of the pinned version are resolved once by ``deploy/kafka/pom.xml`` into
``<cache_dir>/kafka-<version>/libs``. Each broker gets a state directory holding its
config, data, logs and ``broker.json`` (pid and address), so ``up``, ``down`` and
``status`` work across processes, and logs stay behind for diagnosis.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ground.errors import BrokerError, ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POM = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
"""

_LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log}
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerState:
    pid: int
    bootstrap_servers: str
    kafka_version: str
    state_dir: Path

    @property
    def log(self) -> Path:
        return self.state_dir / "logs" / "server.log"


def ensure_jars(version: str, cache_dir: Path) -> Path:
    """Resolves the broker's jars with Maven once; returns the directory holding them.

    Raises:
        BrokerError: Maven is missing or the resolution failed (its output is included).
    """
    libs = cache_dir / f"kafka-{version}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError("Maven (mvn) is not on PATH; it is needed once to resolve the Kafka jars")
    libs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-Dkafka.version={version}", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise BrokerError(f"Maven could not resolve Kafka {version} jars:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
    marker.write_text(version)
    return libs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _claim(port: int) -> int:
    """``port`` if it can be bound on 127.0.0.1 now, a free port for 0.

    Raises:
        BrokerError: something else listens on ``port`` (another broker, most likely).
    """
    if port == 0:
        return free_port()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BrokerError(
                f"port {port} on 127.0.0.1 is in use, so the broker cannot listen there; stop what holds it"
                " (`learnright kafka status` shows a broker of this project) or set LEARNRIGHT_BROKER__PORT"
                " to another port (0: any free one)"
            ) from exc
    return port


def _java(libs: Path, *args: str, log4j: Path | None = None, heap: str = "256m") -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise ConfigError("java is not on PATH; the Kafka broker needs Java 17")
    options = [f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
    if log4j is not None:
        options.append(f"-Dlog4j.configuration=file:{log4j}")
    return [java, *options, "-cp", f"{libs}/*", *args]


def read_state(state_dir: Path) -> BrokerState | None:
    path = state_dir / "broker.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return BrokerState(pid=data["pid"], bootstrap_servers=data["bootstrap_servers"],
                       kafka_version=data["kafka_version"], state_dir=state_dir)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its status file says it has exited.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("\nState:\tZ") == -1
    except OSError:
        return True


def up(state_dir: Path, *, version: str, cache_dir: Path, heap: str = "512m", timeout_s: float = 90.0,
       fresh: bool = True, port: int = 0) -> BrokerState:
    """Starts a broker in ``state_dir`` (or returns the one already running there).

    With ``fresh`` (the default) the broker starts empty, listening on ``port`` (0: any
    free port; `learnright kafka up` passes the fixed ``broker.port`` so that a client
    can know the address without asking); without it, a broker that ran in
    ``state_dir`` before restarts on its old ports with its data. The controller
    listener always takes a free port: no client connects to it.

    Raises:
        BrokerError: ``port`` is in use, or the broker did not become ready in
            ``timeout_s`` (the log tail is included).
    """
    state_dir = state_dir.resolve()
    current = read_state(state_dir)
    if current is not None and is_alive(current.pid):
        return current
    libs = ensure_jars(version, cache_dir)
    properties = state_dir / "server.properties"
    log4j = state_dir / "log4j.properties"
    if fresh or not properties.exists():
        if state_dir.exists():
            for stale in ("data", "server.properties"):
                target = state_dir / stale
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        port, controller_port = _claim(port), free_port()
        properties.write_text(_SERVER_PROPERTIES.format(port=port, controller_port=controller_port, data=state_dir / "data"))
        log4j.write_text(_LOG4J.format(log=state_dir / "logs" / "server.log"))
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        formatted = subprocess.run(
            _java(libs, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", f"--config={properties}", log4j=log4j),
            capture_output=True, text=True,
        )
        if formatted.returncode != 0:
            raise BrokerError(f"formatting Kafka storage in {state_dir} failed:\n{formatted.stdout}{formatted.stderr}")
    port = int(next(line for line in properties.read_text().splitlines() if line.startswith("advertised.listeners"))
               .rsplit(":", 1)[1])
    with open(state_dir / "logs" / "stdout.log", "ab") as out:
        process = subprocess.Popen(
            _java(libs, "kafka.Kafka", str(properties), log4j=log4j, heap=heap),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    state = BrokerState(pid=process.pid, bootstrap_servers=f"127.0.0.1:{port}", kafka_version=version, state_dir=state_dir)
    (state_dir / "broker.json").write_text(json.dumps({
        "pid": state.pid, "bootstrap_servers": state.bootstrap_servers, "kafka_version": version,
    }))
    try:
        wait_ready(state.bootstrap_servers, timeout_s, pid=state.pid)
    except BrokerError as exc:
        down(state_dir)
        raise BrokerError(f"{exc}\n--- tail of {state.log} ---\n{_tail(state.log)}") from exc
    return state


def wait_ready(bootstrap_servers: str, timeout_s: float, pid: int | None = None) -> None:
    """Waits until the broker answers a metadata request.

    Raises:
        BrokerError: the process died or did not answer in time.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if pid is not None and not is_alive(pid):
            raise BrokerError(f"Kafka broker (pid {pid}) exited during start-up")
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
            try:
                admin.describe_cluster()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.5)
    raise BrokerError(f"Kafka broker at {bootstrap_servers} not ready after {timeout_s:.0f}s: {last}")


def down(state_dir: Path, timeout_s: float = 30.0) -> bool:
    """Stops the broker of ``state_dir`` cleanly (SIGTERM, then SIGKILL); True if one ran."""
    state = read_state(state_dir.resolve())
    if state is None:
        return False
    ran = is_alive(state.pid)
    if ran:
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while is_alive(state.pid) and time.monotonic() < deadline:
            _reap(state.pid)
            time.sleep(0.2)
        if is_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
        _reap(state.pid)
    (state.state_dir / "broker.json").unlink(missing_ok=True)
    return ran


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
