"""Loads the newest model version from the repository, warms it, and swaps it in.

Each loaded version owns its batcher, so every image of a call is scored by the version the
call started with and the response names that version. A new version is loaded and warmed
beside the old one; the swap is one assignment; the old version's queue drains before it is
closed, so a rollout fails no call. A version that fails to load is never switched to."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.repository import ModelMetadata, latest_version_dir, load_metadata
from server.batcher import Batcher
from server.config import BatchConfig, ModelConfig, PolicyConfig
from server.engines import Engine
from server.errors import ModelUnavailable
from server.metrics import Metrics
from server.policy import Policy, parse_overrides

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    metadata: ModelMetadata
    engine: Engine
    policy: Policy
    batcher: Batcher
    path: Path

    @property
    def version(self) -> str:
        return str(self.metadata.version)

    @property
    def input_hw(self) -> tuple[int, int]:
        return (self.metadata.input_size, self.metadata.input_size)


def choose_engine(metadata: ModelMetadata, path: Path, config: ModelConfig) -> Engine:
    onnx = (metadata.engines or {}).get("onnx")
    onnx_ok = bool(onnx) and (path / onnx["file"]).exists() and onnx.get("max_abs_diff", 1.0) <= config.parity_tolerance
    if config.engine == "onnx" or (config.engine == "auto" and onnx_ok):
        if not onnx_ok:
            raise ValueError(f"{path}: no ONNX model that passed its parity check "
                             f"(tolerance {config.parity_tolerance}; metadata says {onnx!r})")
        from server.engines.onnx_engine import OnnxEngine

        return OnnxEngine(str(path / onnx["file"]), threads=config.threads)
    if config.engine in ("auto", "savedmodel"):
        from server.engines.savedmodel_engine import SavedModelEngine

        return SavedModelEngine(str(path), threads=config.threads)
    raise ValueError(f"unknown engine {config.engine!r}; use auto, onnx or savedmodel")


class ModelManager:
    def __init__(self, config: ModelConfig, batch: BatchConfig, policy: PolicyConfig, metrics: Metrics,
                 on_loaded: Callable[[LoadedModel], Awaitable[None]] | None = None):
        self._on_loaded = on_loaded
        self._config = config
        self._batch = batch
        self._policy = policy
        self._overrides = parse_overrides(policy.thresholds)
        self._metrics = metrics
        # One inference thread: the engine parallelises inside a call with its own threads.
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.current: LoadedModel | None = None
        self._poller: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def get(self) -> LoadedModel:
        if self.current is None:
            raise ModelUnavailable("no model is loaded yet")
        return self.current

    def _build(self, path: Path) -> tuple[ModelMetadata, Engine, Policy]:
        metadata = load_metadata(path)
        policy = Policy(list(metadata.class_names), metadata.benign_class, metadata.thresholds, self._overrides)
        engine = choose_engine(metadata, path, self._config)
        size = metadata.input_size
        for n in sorted({1, self._batch.max_batch_size}):
            scores = engine.predict(np.zeros((n, size, size, 3), dtype=np.uint8))
            if scores.shape != (n, len(metadata.class_names)):
                raise ValueError(f"{path}: engine returned shape {scores.shape} for {n} images, "
                                 f"expected ({n}, {len(metadata.class_names)})")
        return metadata, engine, policy

    async def load_latest(self) -> bool:
        """Loads the newest version if it is newer than the one in service. True if swapped."""
        async with self._lock:
            path = latest_version_dir(Path(self._config.repository), self._config.name)
            if path is None:
                if self.current is None:
                    raise ModelUnavailable(f"no model version under {self._config.repository}/{self._config.name}/")
                return False
            if self.current is not None and path == self.current.path:
                return False
            started = time.perf_counter()
            try:
                metadata, engine, policy = await asyncio.to_thread(self._build, path)
            except Exception as exc:
                self._metrics.model_loads.labels("failed").inc()
                log.error("model %s failed to load, keeping %s: %s", path,
                          self.current.path if self.current else "none", exc)
                if self.current is None:
                    raise ModelUnavailable(f"model {path} failed to load: {exc}") from exc
                return False
            batcher = Batcher(engine.predict, self._batch, self._inference, self._metrics)
            batcher.start()
            old, self.current = self.current, LoadedModel(metadata, engine, policy, batcher, path)
            self._metrics.model_loads.labels("ok").inc()
            self._metrics.model_info.clear()
            self._metrics.model_info.labels(metadata.name, str(metadata.version), engine.name).set(1)
            log.info("model %s version %s loaded and warmed in %.2fs (engine %s, classes %s)", metadata.name,
                     metadata.version, time.perf_counter() - started, engine.name, ",".join(metadata.class_names))
            if self._on_loaded is not None:
                await self._on_loaded(self.current)
            if old is not None:
                await old.batcher.close()
                old.engine.close()
            return True

    def start_polling(self) -> None:
        if self._config.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="model-poller")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._config.poll_interval_s)
            try:
                await self.load_latest()
            except Exception:
                log.exception("model poll failed")

    async def close(self) -> None:
        if self._poller:
            self._poller.cancel()
        if self.current is not None:
            await self.current.batcher.close()
            self.current.engine.close()
        self._inference.shutdown(wait=True)
