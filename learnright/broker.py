"""Real Apache Kafka brokers (KRaft) on loopback, run from jars Maven resolves: one node or a cluster.

The jars of the pinned version are resolved once by ``deploy/kafka/pom.xml`` into
``<cache_dir>/kafka-<version>/libs``. Each node gets a directory holding its config, data,
logs and ``broker.json`` (pid and address), so ``up``, ``down`` and ``status`` work across
processes, and logs stay behind for diagnosis. ``state_dir`` has one of two layouts:

* one node (:func:`up`): ``state_dir`` is that node's directory;
* a cluster (:func:`up_cluster`): ``cluster.json`` (version, heap, each node's id and
  address) and one directory per node, ``node-<id>``, laid out like a single node's.

Every node is broker and controller. The controllers form a static quorum of all the nodes
(``controller.quorum.voters``, still supported by Kafka 4 beside KIP-853's dynamic quorum,
and the one that needs no ``--standalone`` / ``--initial-controllers`` at format time), so
a cluster of three keeps a majority, and serves, while any one node is stopped
(:func:`stop_node`, :func:`start_node`). Kafka 4 logs through log4j2 only; each node's
``log4j2.properties`` sends everything to ``logs/server.log``.
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ground.errors import BrokerError, ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POM = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"

CLUSTER_FORMAT = 1
"""Version of ``cluster.json``; a reader refuses a newer one."""

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
default.replication.factor={replicas}
min.insync.replicas={min_insync}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=3
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_insync}
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_insync}
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
"""

_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Replication:
    """How the broker replicates what it is not told otherwise: its topics' defaults and its own internal topics.

    One node replicates nothing. A cluster keeps three replicas (fewer if it has fewer
    nodes) and acknowledges an ``acks=all`` write once all but one of them hold it, so
    that one stopped node neither loses an acknowledged record nor stops writes.
    """

    factor: int
    min_insync: int

    @classmethod
    def for_nodes(cls, nodes: int) -> "Replication":
        factor = min(nodes, 3)
        return cls(factor=factor, min_insync=max(1, factor - 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerState:
    """A running node: its process and the address clients use."""

    pid: int
    bootstrap_servers: str
    kafka_version: str
    state_dir: Path

    @property
    def log(self) -> Path:
        return self.state_dir / "logs" / "server.log"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterNode:
    """A node of a cluster as ``cluster.json`` records it, running or not."""

    node_id: int
    address: str
    state_dir: Path

    @property
    def log(self) -> Path:
        return self.state_dir / "logs" / "server.log"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterState:
    """A cluster started by :func:`up_cluster`: its nodes in id order."""

    state_dir: Path
    kafka_version: str
    heap: str
    libs: Path
    nodes: tuple[ClusterNode, ...]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address, comma-separated: a client reaches the cluster through any that runs."""
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        """The node with id ``node_id``.

        Raises:
            ConfigError: the cluster has no such node.
        """
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ConfigError(f"the Kafka cluster in {self.state_dir} has nodes {[n.node_id for n in self.nodes]},"
                          f" not node {node_id}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """One node of ``state_dir`` (the single broker, or a cluster's node) and whether it runs."""

    node_id: int
    address: str
    state_dir: Path
    pid: int | None
    """The node's process while it runs; None when it does not."""

    @property
    def running(self) -> bool:
        return self.pid is not None

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
    """A port free on 127.0.0.1 now."""
    return _free_ports(1)[0]


def _free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct ports free on 127.0.0.1 now: each socket is held until all are chosen."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return tuple(sock.getsockname()[1] for sock in sockets)


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


THROUGHPUT_JVM = ("-XX:+UseG1GC",)
"""JVM options of a single broker: G1 and the optimizing JIT, for `learnright bench` and the demo."""
QUICK_START_JVM = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
"""JVM options of the storage tool and of each node of a cluster: the serial collector and the
quick JIT only, which start three JVMs in well under half the time on a busy 2-core machine,
at some cost in peak throughput that a loopback test cluster does not miss."""


def _java(libs: Path, *args: str, log4j2: Path | None = None, heap: str = "256m",
          jvm: tuple[str, ...] = QUICK_START_JVM) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise ConfigError("java is not on PATH; the Kafka broker needs Java 17 or newer")
    options = [f"-Xmx{heap}", *jvm, "-Djava.awt.headless=true"]
    if log4j2 is not None:
        options.append(f"-Dlog4j2.configurationFile={log4j2}")
    return [java, *options, "-cp", f"{libs}/*", *args]


def read_state(state_dir: Path) -> BrokerState | None:
    """The node last started in ``state_dir`` (a single broker's or a cluster node's directory), if any."""
    path = state_dir / "broker.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return BrokerState(pid=data["pid"], bootstrap_servers=data["bootstrap_servers"],
                       kafka_version=data["kafka_version"], state_dir=state_dir)


def read_cluster(state_dir: Path) -> ClusterState | None:
    """The cluster :func:`up_cluster` configured in ``state_dir``, running or not; None for a single broker or nothing."""
    path = state_dir / "cluster.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format", 1) > CLUSTER_FORMAT:
        raise ConfigError(f"{path} has format {data['format']}, newer than this Learnright knows"
                          f" ({CLUSTER_FORMAT}); run the newer Learnright that wrote it, or start a fresh cluster")
    return ClusterState(
        state_dir=state_dir, kafka_version=data["kafka_version"], heap=data["heap"], libs=Path(data["libs"]),
        nodes=tuple(ClusterNode(node_id=node["node_id"], address=node["address"],
                                state_dir=state_dir / f"node-{node['node_id']}") for node in data["nodes"]),
    )


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


def node_statuses(state_dir: Path) -> tuple[NodeStatus, ...]:
    """Every node of ``state_dir`` (a cluster's, in id order, or the single broker) and whether it runs.

    Empty when nothing was started there or a single broker was stopped (its ``broker.json`` is gone).
    """
    state_dir = state_dir.resolve()
    cluster = read_cluster(state_dir)
    if cluster is not None:
        return tuple(NodeStatus(node_id=node.node_id, address=node.address, state_dir=node.state_dir,
                                pid=_running_pid(node.state_dir)) for node in cluster.nodes)
    single = read_state(state_dir)
    if single is None:
        return ()
    return (NodeStatus(node_id=1, address=single.bootstrap_servers, state_dir=state_dir,
                       pid=_running_pid(state_dir)),)


def running_bootstrap(state_dir: Path) -> str | None:
    """The addresses of the nodes of ``state_dir`` that run, comma-separated; None if none runs."""
    running = [node.address for node in node_statuses(state_dir) if node.running]
    return ",".join(running) if running else None


def _running_pid(node_dir: Path) -> int | None:
    state = read_state(node_dir)
    return state.pid if state is not None and is_alive(state.pid) else None


def up(state_dir: Path, *, version: str, cache_dir: Path, heap: str = "512m", timeout_s: float = 90.0,
       fresh: bool = True, port: int = 0) -> BrokerState:
    """Starts a single broker in ``state_dir`` (or returns the one already running there).

    With ``fresh`` (the default) the broker starts empty, listening on ``port`` (0: any
    free port; `learnright kafka up` passes the fixed ``broker.port`` so that a client
    can know the address without asking); without it, a broker that ran in
    ``state_dir`` before restarts on its old ports with its data. The controller
    listener always takes a free port: no client connects to it.

    Raises:
        BrokerError: ``port`` is in use, a cluster runs in ``state_dir``, or the broker
            did not become ready in ``timeout_s`` (the log tail is included).
    """
    state_dir = state_dir.resolve()
    current = read_state(state_dir)
    if current is not None and is_alive(current.pid):
        return current
    _refuse_if_running(state_dir, "a single broker")
    libs = ensure_jars(version, cache_dir)
    if fresh or not (state_dir / "server.properties").exists():
        _forget_cluster(state_dir)
        port = _claim(port)
        (controller_port,) = _free_ports(1)
        _configure(state_dir, node_id=1, port=port, controller_port=controller_port,
                   voters=f"1@127.0.0.1:{controller_port}", replication=Replication.for_nodes(1))
        _format(libs, _new_cluster_id(), (state_dir,))
    state = _launch(state_dir, libs, heap, version, THROUGHPUT_JVM)
    try:
        wait_ready(state.bootstrap_servers, timeout_s, pids=(state.pid,))
    except BrokerError as exc:
        down(state_dir)
        raise BrokerError(f"{exc}\n--- tail of {state.log} ---\n{_tail(state.log)}") from exc
    return state


def up_cluster(state_dir: Path, *, nodes: int, version: str, cache_dir: Path, heap: str = "512m",
               timeout_s: float = 90.0, fresh: bool = True, port: int = 0) -> ClusterState:
    """Starts a cluster of ``nodes`` nodes on 127.0.0.1 in ``state_dir`` (or returns the one running there).

    Node ``i`` (1-based) listens on ``port + i - 1`` (``port`` 0: each on any free port).
    Every node is broker and controller, one voter of a static quorum of all the nodes.
    The brokers' defaults follow :meth:`Replication.for_nodes`: with three nodes, a topic
    created without a replication factor gets three replicas and ``min.insync.replicas=2``.
    Returns once every node is an unfenced broker of the cluster. Without ``fresh`` the
    cluster that ran in ``state_dir`` before restarts with its data and ports.

    Raises:
        ConfigError: ``nodes`` is below 1, or differs from the recorded cluster's without ``fresh``.
        BrokerError: a port is in use, a single broker or only part of a cluster runs in
            ``state_dir``, or the cluster was not ready in ``timeout_s`` (each node's log
            tail is included).
    """
    if nodes < 1:
        raise ConfigError(f"a Kafka cluster needs at least 1 node (got --nodes {nodes})")
    state_dir = state_dir.resolve()
    current = read_cluster(state_dir)
    statuses = node_statuses(state_dir)
    if current is not None and statuses and all(node.running for node in statuses) and len(current.nodes) == nodes:
        return current
    _refuse_if_running(state_dir, f"a cluster of {nodes} nodes")
    libs = ensure_jars(version, cache_dir)
    if fresh or current is None:
        current = _configure_cluster(state_dir, nodes=nodes, version=version, heap=heap, libs=libs, port=port)
    elif len(current.nodes) != nodes:
        raise ConfigError(f"the Kafka cluster in {state_dir} has {len(current.nodes)} nodes, not {nodes};"
                          " start it fresh to change its size")
    started = [_launch(node.state_dir, libs, heap, version, QUICK_START_JVM) for node in current.nodes]
    try:
        wait_ready(current.bootstrap_servers, timeout_s, pids=tuple(state.pid for state in started),
                   node_ids=tuple(node.node_id for node in current.nodes))
    except BrokerError as exc:
        down(state_dir)
        tails = "".join(f"\n--- tail of {node.log} ---\n{_tail(node.log, 15)}" for node in current.nodes)
        raise BrokerError(f"{exc}{tails}") from exc
    return current


def stop_node(state_dir: Path, node_id: int, timeout_s: float = 30.0) -> bool:
    """Stops node ``node_id`` of the cluster in ``state_dir`` cleanly; True if it ran.

    The others keep serving: their quorum keeps its majority (with three nodes) and the
    stopped node's partitions lead elsewhere. Its data stays for :func:`start_node`.

    Raises:
        ConfigError: ``state_dir`` holds no cluster, or the cluster has no such node.
    """
    node = _require_cluster(state_dir).node(node_id)
    return _stop((node.state_dir,), timeout_s)


def start_node(state_dir: Path, node_id: int, timeout_s: float = 90.0) -> BrokerState:
    """Starts node ``node_id`` of the cluster in ``state_dir`` again, with its data and ports (or returns it running).

    Returns once the node answers and counts itself an unfenced broker; it then catches
    up on the partitions it replicates in the background, before rejoining their ISR
    (:func:`wait_in_sync` waits for that).

    Raises:
        ConfigError: ``state_dir`` holds no cluster, or the cluster has no such node.
        BrokerError: the node did not become ready in ``timeout_s`` (its log tail is included).
    """
    cluster = _require_cluster(state_dir)
    node = cluster.node(node_id)
    current = read_state(node.state_dir)
    if current is not None and is_alive(current.pid):
        return current
    state = _launch(node.state_dir, cluster.libs, cluster.heap, cluster.kafka_version, QUICK_START_JVM)
    try:
        wait_ready(node.address, timeout_s, pids=(state.pid,), node_ids=(node_id,))
    except BrokerError as exc:
        _stop((node.state_dir,), 30.0)
        raise BrokerError(f"{exc}\n--- tail of {node.log} ---\n{_tail(node.log)}") from exc
    return state


def wait_ready(bootstrap_servers: str, timeout_s: float, *, pids: tuple[int, ...] = (),
               node_ids: tuple[int, ...] = ()) -> None:
    """Waits until the broker answers a cluster description naming each of ``node_ids`` as an unfenced broker.

    Raises:
        BrokerError: one of ``pids`` died, or the brokers were not ready in time.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        dead = [pid for pid in pids if not is_alive(pid)]
        if dead:
            raise BrokerError(f"Kafka broker process(es) {dead} exited during start-up")
        try:
            # Short bootstrap and backoff: kafka-python would otherwise wait up to 30 s on a
            # broker that is still starting, and overshoot the moment it is ready.
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000,
                                     bootstrap_timeout_ms=2000, reconnect_backoff_max_ms=500)
            try:
                brokers = admin.describe_cluster()["brokers"]
            finally:
                admin.close()
            unfenced = {broker["broker_id"] for broker in brokers if not broker.get("is_fenced", False)}
            missing = sorted(set(node_ids) - unfenced)
            if not missing:
                return
            last = f"nodes {missing} are not unfenced brokers yet"
        except (KafkaError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    raise BrokerError(f"Kafka at {bootstrap_servers} not ready after {timeout_s:.0f}s: {last}")


def wait_in_sync(bootstrap_servers: str, timeout_s: float = 60.0) -> None:
    """Waits until every partition of every topic has all its replicas in sync (none under-replicated).

    After :func:`start_node` the node catches up in the background; call this before
    stopping another node, so that the cluster never has fewer copies than it should.

    Raises:
        BrokerError: partitions were still under-replicated after ``timeout_s`` (they are named).
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    lagging: object = "not asked yet"
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000,
                                     bootstrap_timeout_ms=2000, reconnect_backoff_max_ms=500)
            try:
                topics = admin.describe_topics()
            finally:
                admin.close()
            lagging = sorted(f"{topic['name']}-{partition['partition_index']}" for topic in topics
                             for partition in topic["partitions"]
                             if set(partition["isr_nodes"]) != set(partition["replica_nodes"]))
            if not lagging:
                return
        except (KafkaError, OSError) as exc:
            lagging = exc
        time.sleep(0.5)
    raise BrokerError(f"Kafka at {bootstrap_servers}: partitions not in sync after {timeout_s:.0f}s: {lagging}")


def down(state_dir: Path, timeout_s: float = 30.0) -> bool:
    """Stops the broker, or every node of the cluster, of ``state_dir`` cleanly (SIGTERM, then SIGKILL); True if one ran.

    A cluster's nodes are told to stop all at once, so that none waits for a quorum the
    others already left.
    """
    state_dir = state_dir.resolve()
    cluster = read_cluster(state_dir)
    dirs = (state_dir, *(node.state_dir for node in cluster.nodes)) if cluster is not None else (state_dir,)
    return _stop(dirs, timeout_s)


def _stop(node_dirs: tuple[Path, ...], timeout_s: float) -> bool:
    """Stops the node of each of ``node_dirs`` (SIGTERM to all, then SIGKILL to what is left); True if one ran."""
    states = [state for state in map(read_state, node_dirs) if state is not None]
    running = [state.pid for state in states if is_alive(state.pid)]
    for pid in running:
        _signal(pid, signal.SIGTERM)
    _wait_exit(running, timeout_s)
    for pid in running:
        if is_alive(pid):
            _signal(pid, signal.SIGKILL)
    _wait_exit(running, 10.0)
    for state in states:
        (state.state_dir / "broker.json").unlink(missing_ok=True)
    return bool(running)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_exit(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for pid in pids:
            _reap(pid)
        if not any(is_alive(pid) for pid in pids) or time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def _refuse_if_running(state_dir: Path, wanted: str) -> None:
    """Raises unless no node of ``state_dir`` runs (a broker of the other layout, or part of a cluster)."""
    running = [node for node in node_statuses(state_dir) if node.running]
    if running:
        described = ", ".join(f"node {node.node_id} at {node.address} (pid {node.pid})" for node in running)
        raise BrokerError(f"cannot start {wanted} in {state_dir}: {described} already run there;"
                          " stop them first (`learnright kafka down`)")


def _require_cluster(state_dir: Path) -> ClusterState:
    cluster = read_cluster(state_dir.resolve())
    if cluster is None:
        raise ConfigError(f"no Kafka cluster in {state_dir} (start one with `learnright kafka up --nodes 3`)")
    return cluster


def _forget_cluster(state_dir: Path) -> None:
    """Removes what a cluster left in ``state_dir`` before a single broker takes it."""
    (state_dir / "cluster.json").unlink(missing_ok=True)
    for node_dir in state_dir.glob("node-*"):
        shutil.rmtree(node_dir)


def _configure_cluster(state_dir: Path, *, nodes: int, version: str, heap: str, libs: Path, port: int) -> ClusterState:
    """Writes and formats a fresh cluster's nodes (what ran in ``state_dir`` before is removed) and its ``cluster.json``."""
    for stale in ("data", "server.properties", "broker.json"):
        target = state_dir / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    _forget_cluster(state_dir)
    if port == 0:
        ports = _free_ports(2 * nodes)
        client_ports, controller_ports = ports[:nodes], ports[nodes:]
    else:
        client_ports, controller_ports = tuple(_claim(port + i) for i in range(nodes)), _free_ports(nodes)
    ids = tuple(range(1, nodes + 1))
    voters = ",".join(f"{node_id}@127.0.0.1:{controller}" for node_id, controller in zip(ids, controller_ports))
    cluster = ClusterState(
        state_dir=state_dir, kafka_version=version, heap=heap, libs=libs,
        nodes=tuple(ClusterNode(node_id=node_id, address=f"127.0.0.1:{client}", state_dir=state_dir / f"node-{node_id}")
                    for node_id, client in zip(ids, client_ports)),
    )
    replication = Replication.for_nodes(nodes)
    for node, client, controller in zip(cluster.nodes, client_ports, controller_ports):
        _configure(node.state_dir, node_id=node.node_id, port=client, controller_port=controller, voters=voters,
                   replication=replication)
    _format(libs, _new_cluster_id(), tuple(node.state_dir for node in cluster.nodes))
    (state_dir / "cluster.json").write_text(json.dumps({
        "format": CLUSTER_FORMAT, "kafka_version": version, "heap": heap, "libs": str(libs),
        "nodes": [{"node_id": node.node_id, "address": node.address} for node in cluster.nodes],
    }, indent=2))
    return cluster


def _configure(node_dir: Path, *, node_id: int, port: int, controller_port: int, voters: str,
               replication: Replication) -> None:
    """Writes a fresh node's ``server.properties``, removing its old data."""
    for stale in ("data", "server.properties", "broker.json"):
        target = node_dir / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    (node_dir / "logs").mkdir(parents=True, exist_ok=True)
    (node_dir / "server.properties").write_text(_SERVER_PROPERTIES.format(
        node_id=node_id, voters=voters, port=port, controller_port=controller_port, data=node_dir / "data",
        replicas=replication.factor, min_insync=replication.min_insync))
    _write_log4j2(node_dir)


def _write_log4j2(node_dir: Path) -> Path:
    path = node_dir / "log4j2.properties"
    path.write_text(_LOG4J2.format(log=node_dir / "logs" / "server.log"))
    return path


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format(libs: Path, cluster_id: str, node_dirs: tuple[Path, ...]) -> None:
    """Formats each node's storage for ``cluster_id``, the nodes side by side (one JVM each).

    Raises:
        BrokerError: a format failed (its output is included).
    """
    runs = [(node_dir, subprocess.Popen(
        _java(libs, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
              f"--config={node_dir / 'server.properties'}", log4j2=_write_log4j2(node_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )) for node_dir in node_dirs]
    failures = []
    for node_dir, process in runs:
        output, _ = process.communicate()
        if process.returncode != 0:
            failures.append(f"formatting Kafka storage in {node_dir} failed:\n{output}")
    if failures:
        raise BrokerError("\n".join(failures))


def _launch(node_dir: Path, libs: Path, heap: str, version: str, jvm: tuple[str, ...]) -> BrokerState:
    """Starts the node configured in ``node_dir`` and records it in its ``broker.json``; does not wait."""
    properties = node_dir / "server.properties"
    port = int(next(line for line in properties.read_text().splitlines() if line.startswith("advertised.listeners"))
               .rsplit(":", 1)[1])
    (node_dir / "logs").mkdir(parents=True, exist_ok=True)
    with open(node_dir / "logs" / "stdout.log", "ab") as out:
        process = subprocess.Popen(
            _java(libs, "kafka.Kafka", str(properties), log4j2=_write_log4j2(node_dir), heap=heap, jvm=jvm),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    state = BrokerState(pid=process.pid, bootstrap_servers=f"127.0.0.1:{port}", kafka_version=version, state_dir=node_dir)
    (node_dir / "broker.json").write_text(json.dumps({
        "pid": state.pid, "bootstrap_servers": state.bootstrap_servers, "kafka_version": version,
    }))
    return state


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
