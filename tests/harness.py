"""Runs the real service (server.app.Service) on an ephemeral loopback port in a background
thread with its own event loop, so plain synchronous tests can call it over real gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from pathlib import Path

import grpc

from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
from server.app import Service
from server.config import Config


class ServerThread:
    def __init__(self, config: Config):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop", daemon=True)
        self.thread.start()
        self.service = Service(config)
        self.stopped = False

    def start(self, timeout: float = 120.0) -> ServerThread:
        asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(timeout)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)

    def stub(self, channel: grpc.Channel) -> pb_grpc.ModerationStub:
        return pb_grpc.ModerationStub(channel)

    def stop_async(self) -> asyncio.Future:
        self.stopped = True
        return asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop)

    def stop(self, timeout: float = 60.0) -> None:
        if not self.stopped:
            self.stop_async().result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


def make_config(model_repo: Path, audit_path: Path, allow: tuple[str, ...] = (), **sections) -> Config:
    """A Config for tests: ephemeral ports, no metrics server unless asked, fast polling."""
    base = Config()
    overrides = {
        "server": dataclasses.replace(base.server, port=0, metrics_port=-1, drain_delay_s=0.3, grace_s=5.0),
        # Threads, not worker processes, unless a test asks: spawning workers costs ~1 s a server.
        "model": dataclasses.replace(
            base.model,
            repository=str(model_repo),
            poll_interval_s=0.2,
            runner="thread",
            rollout_jitter_s=0.0,
            workers=2,
        ),
        "fetch": dataclasses.replace(base.fetch, allow=allow, timeout_s=2.0),
        # Off unless a test asks (reader={"enabled": True}): the OCR sessions cost ~1 s a server,
        # and the fake models' scores are not what the reader is tested with.
        "reader": dataclasses.replace(base.reader, enabled=False),
        "audit": dataclasses.replace(base.audit, url=f"sqlite:///{audit_path}", flush_interval_s=0.05),
    }
    for name, changes in sections.items():
        overrides[name] = dataclasses.replace(overrides.get(name, getattr(base, name)), **changes)
    return dataclasses.replace(base, **overrides)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
