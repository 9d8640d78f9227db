"""Assembles the service from a Config and runs its life cycle: start (metrics, audit,
fetcher, gRPC with health and reflection, model load and warm-up, SERVING), then drain."""

from __future__ import annotations

import asyncio
import logging
import time
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from moderation_api.tfserving import predict_pb2, predict_pb2_grpc
from moderation_api.v1 import audit_pb2_grpc
from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
from server.api.audit import SERVICE_NAME as AUDIT_SERVICE_NAME
from server.api.audit import AuditServicer
from server.api.interceptors import server_interceptors
from server.api.moderation import ModerationServicer
from server.api.security import load_tokens, server_credentials
from server.api.tfserving import PredictionServicer
from server.audit.components import AuditComponents
from server.audit.writer import AuditWriter
from server.config import Config
from server.errors import ModelUnavailable
from server.metrics import Metrics
from server.pipeline.core import ModerationCore
from server.pipeline.fetch import Fetcher
from server.pipeline.policy import policy_factory
from server.serving.model_manager import LoadedModel, ModelManager

log = logging.getLogger("server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Moderation"].full_name


class Service:
    def __init__(self, config: Config):
        self.config = config
        self.metrics = Metrics()
        self.port: int | None = None
        self.metrics_port: int | None = None
        # grpc-stubs (1.53) predates grpc_health's aio module, which grpcio 1.85 has.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._server: grpc.aio.Server | None = None
        self._metrics_server: WSGIServer | None = None
        self.audit: AuditWriter | None = None
        self.audit_components: AuditComponents | None = None
        self.fetcher: Fetcher | None = None
        self.models: ModelManager | None = None
        self.core: ModerationCore | None = None
        self._t0 = time.perf_counter()
        self._draining = False

    def _step(self, message: str, *args) -> None:
        log.info("[%6.2fs] " + message, time.perf_counter() - self._t0, *args)

    async def start(self) -> None:
        cfg = self.config
        if cfg.server.metrics_port >= 0:
            self._metrics_server, _ = start_http_server(
                cfg.server.metrics_port, cfg.server.metrics_host, registry=self.metrics.registry
            )
            self.metrics_port = self._metrics_server.server_port
            self._step("metrics on http://%s:%d/metrics", cfg.server.metrics_host, self.metrics_port)
        self.audit_components = AuditComponents(cfg, self.metrics)
        self.audit_components.start()
        self.audit = self.audit_components.writer
        self._step("audit store %s open (sampling %.2f%% of passes)", cfg.audit.url, 100 * cfg.audit.sample_rate)
        self.fetcher = Fetcher(cfg.fetch)
        await self.fetcher.start()
        self._step(
            "fetcher ready (timeout %.1fs, max %d bytes, allow-list %s)",
            cfg.fetch.timeout_s,
            cfg.fetch.max_bytes,
            ",".join(cfg.fetch.allow) or "empty",
        )
        self.models = ModelManager(
            cfg.model,
            cfg.batch,
            policy_factory(cfg.policy.thresholds),
            cfg.decode,
            self.metrics,
            on_loaded=self._model_loaded,
            reader=cfg.reader,
        )
        self.core = ModerationCore(cfg, self.models, self.fetcher, self.audit, self.metrics)

        options = [
            ("grpc.max_receive_message_length", cfg.server.max_message_bytes),
            ("grpc.max_send_message_length", cfg.server.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        tokens = load_tokens(cfg.server.auth_tokens_file) if cfg.server.auth_tokens_file else None
        credentials = server_credentials(cfg.server)
        self._server = grpc.aio.server(interceptors=server_interceptors(self.metrics, tokens), options=options)
        pb_grpc.add_ModerationServicer_to_server(ModerationServicer(self.core), self._server)
        predict_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.core), self._server)
        audit_pb2_grpc.add_AuditServicer_to_server(AuditServicer(self.audit_components.service), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                AUDIT_SERVICE_NAME,
                predict_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )
        await self._set_serving(False)
        address = f"{cfg.server.host}:{cfg.server.port}"
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        await self._server.start()
        security = "plaintext" if credentials is None else "mutual TLS" if cfg.server.tls_client_ca else "TLS"
        self._step(
            "gRPC listening on %s:%d (%s%s; health NOT_SERVING until the model is warm)",
            cfg.server.host,
            self.port,
            security,
            ", bearer tokens required" if tokens else "",
        )
        try:
            await self.models.load_latest()
        except ModelUnavailable as exc:
            # Keep running NOT_SERVING: the poller picks the model up when it is published.
            log.warning("%s; waiting for a model version to be published", exc)
        self.models.start_polling()

    async def _model_loaded(self, model: LoadedModel) -> None:
        if self._draining:
            return
        await self._set_serving(True)
        self._step("SERVING model %s version %s (engine %s)", model.metadata.name, model.version, model.engine_name)

    async def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Drain: NOT_SERVING first so load balancers move away, refuse new calls, let the
        in-flight ones finish within the grace period, then flush the audit queue."""
        grace = self.config.server.grace_s
        self._step(
            "draining: NOT_SERVING for %.1fs, then %.1fs grace for calls in flight",
            self.config.server.drain_delay_s,
            grace,
        )
        self._draining = True
        await self._set_serving(False)
        if self._server:
            await asyncio.sleep(self.config.server.drain_delay_s)
            await self._server.stop(grace)
        if self.models:
            await self.models.close()
        if self.fetcher:
            await self.fetcher.close()
        if self.audit_components:
            self.audit_components.close()
        if self._metrics_server:
            self._metrics_server.shutdown()
        self._step("stopped")

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def run_until_signalled(service: Service) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
        await stop.wait()
    finally:
        await service.stop()
