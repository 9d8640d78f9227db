"""Loads the newest model version from the repository, warms it, and swaps it in.

Each loaded version owns its runner and batcher, so every image of a call is scored by the
version the call started with and the response names that version. A new version is loaded
and warmed beside the old one; the swap is one assignment; the old version's queue drains
before its workers stop, so a rollout fails no call. A version that fails to load is never
switched to, and moderation_model_loads_total{result="failed"} counts it; at start-up the newest
version that loads is served."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from model.preprocess import DecodeConfig
from model.reader.config import ReaderConfig
from model.reader.types import ReadingResult
from model.repository import ModelMetadata, list_versions, load_metadata, version_dir
from server.config import BatchConfig, ModelConfig
from server.errors import ModelUnavailable
from server.metrics import Metrics
from server.serving.batch import Item, ItemResult
from server.serving.batcher import Batcher
from server.serving.loading import READER_OFF
from server.serving.runners import Runner, RunnerSpec, start_runner
from server.types import Decision

log = logging.getLogger(__name__)


class DecisionPolicy(Protocol):
    """Scores -> decision, for one model version (server.pipeline.policy.Policy): built by the
    pipeline from the version's metadata, so serving does not depend on the pipeline."""

    def decide(self, scores: dict[str, float], reading: ReadingResult | None = None) -> Decision: ...

    def explain(
        self, scores: dict[str, float], reading: ReadingResult | None = None
    ) -> tuple[Decision, tuple[str, ...]]: ...


@dataclass
class LoadedModel:
    metadata: ModelMetadata
    runner: Runner
    policy: DecisionPolicy
    batcher: Batcher[Item, ItemResult]
    path: Path

    @property
    def version(self) -> str:
        return str(self.metadata.version)

    @property
    def engine_name(self) -> str:
        return self.runner.engine_name


class ModelManager:
    def __init__(
        self,
        config: ModelConfig,
        batch: BatchConfig,
        make_policy: Callable[[ModelMetadata], DecisionPolicy],
        decode: DecodeConfig,
        metrics: Metrics,
        on_loaded: Callable[[LoadedModel], Awaitable[None]] | None = None,
        reader: ReaderConfig = READER_OFF,
    ):
        self._config = config
        self._reader = reader
        self._batch = batch
        self._decode = decode
        # Built at load time, so that thresholds that do not fit a version fail its load.
        self._make_policy = make_policy
        self._metrics = metrics
        self._on_loaded = on_loaded
        self.current: LoadedModel | None = None
        self._failed: set[Path] = set()  # a broken version is reported once, not at every poll
        self._poller: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def get(self) -> LoadedModel:
        if self.current is None:
            raise ModelUnavailable("no model is loaded yet")
        return self.current

    async def _build(self, path: Path) -> tuple[ModelMetadata, Runner, DecisionPolicy]:
        metadata = await asyncio.to_thread(load_metadata, path)
        policy = self._make_policy(metadata)
        runner = await start_runner(
            RunnerSpec(str(path), self._config, self._decode, self._batch.max_batch_size, self._reader)
        )
        return metadata, runner, policy

    def _candidates(self) -> list[Path]:
        """Versions worth trying, newest first. At start-up every version qualifies, so a broken
        newest version does not keep the server from serving the last good one; once serving,
        only a version newer than the current one does."""
        root = Path(self._config.repository)
        versions = [version_dir(root, self._config.name, v) for v in reversed(list_versions(root, self._config.name))]
        versions = [v for v in versions if v not in self._failed]
        if self.current is None:
            return versions
        newer = [v for v in versions if int(v.name) > self.current.metadata.version]
        return newer[:1]

    async def load_latest(self) -> bool:
        """Loads the newest loadable version if it is newer than the one in service. True if swapped."""
        async with self._lock:
            candidates = self._candidates()
            if not candidates:
                if self.current is None:
                    raise ModelUnavailable(
                        f"no loadable model version under {self._config.repository}/{self._config.name}/"
                    )
                return False
            for path in candidates:
                started = time.perf_counter()
                try:
                    metadata, runner, policy = await self._build(path)
                except Exception as exc:
                    self._failed.add(path)
                    self._metrics.model_loads.labels("failed").inc()
                    log.error(
                        "model %s failed to load, keeping %s: %s",
                        path,
                        self.current.path if self.current else "none",
                        exc,
                    )
                    continue
                batcher = Batcher(runner.run, self._batch, self._metrics, failed=ItemResult.failed, slots=runner.slots)
                await self._swap(LoadedModel(metadata, runner, policy, batcher, path), started)
                return True
            if self.current is None:
                raise ModelUnavailable(
                    f"no version under {self._config.repository}/{self._config.name}/ loads; see the log"
                )
            return False

    async def _swap(self, new: LoadedModel, started: float) -> None:
        new.batcher.start()
        old, self.current = self.current, new
        metadata, runner = new.metadata, new.runner
        self._metrics.model_loads.labels("ok").inc()
        self._metrics.model_info.clear()
        self._metrics.model_info.labels(metadata.name, str(metadata.version), runner.engine_name).set(1)
        log.info(
            "model %s version %s loaded and warmed in %.2fs (engine %s, %s runner, %d batch slots, classes %s)",
            metadata.name,
            metadata.version,
            time.perf_counter() - started,
            runner.engine_name,
            self._config.runner,
            runner.slots,
            ",".join(metadata.class_names),
        )
        if self._on_loaded is not None:
            await self._on_loaded(new)
        if old is not None:
            await old.batcher.close()
            await old.runner.close()

    def start_polling(self) -> None:
        if self._config.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="model-poller")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._config.poll_interval_s)
            try:
                if self.current is not None and self._candidates() and self._config.rollout_jitter_s > 0:
                    # Replicas that share a repository see a new version at the same poll;
                    # loading it costs CPU-seconds, so they spread their loads out.
                    await asyncio.sleep(random.uniform(0, self._config.rollout_jitter_s))
                await self.load_latest()
            except Exception:
                log.exception("model poll failed")

    async def close(self) -> None:
        if self._poller:
            self._poller.cancel()
        if self.current is not None:
            await self.current.batcher.close()
            await self.current.runner.close()
