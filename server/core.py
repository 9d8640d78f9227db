"""The Classify data flow, knowing nothing of gRPC: validate -> fetch -> decode -> batch ->
policy -> audit. Per-image problems become that image's outcome; whole-call problems are
raised as the typed exceptions of server/errors.py."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from server.audit.records import AuditReason, AuditRecord
from server.audit.writer import AuditWriter
from server.config import Config
from server.decode import decode_image
from server.errors import DeadlineExceeded, ImageError, Overloaded
from server.fetch import Fetcher
from server.metrics import Metrics
from server.model_manager import LoadedModel, ModelManager
from server.sampling import is_sampled
from server.types import ClassifyCall, ClassifyResult, Decision, ImageInput, ImageOutcome
from server.validate import validate_call

log = logging.getLogger(__name__)


class ModerationCore:
    def __init__(self, config: Config, models: ModelManager, fetcher: Fetcher, audit: AuditWriter | None,
                 metrics: Metrics):
        self.config = config
        self.models = models
        self.fetcher = fetcher
        self.audit = audit
        self.metrics = metrics
        self.on_error = Decision[config.policy.on_error.upper()]
        self._decode_pool = ThreadPoolExecutor(max_workers=config.server.decode_threads, thread_name_prefix="decode")
        self._inflight = 0

    def close(self) -> None:
        self._decode_pool.shutdown(wait=True)

    async def classify(self, call: ClassifyCall, time_remaining: float | None = None) -> ClassifyResult:
        validate_call(call, self.config.limits)
        model = self.models.get()
        if self._inflight >= self.config.server.max_concurrent_calls:
            raise Overloaded(f"{self._inflight} calls in progress, limit {self.config.server.max_concurrent_calls}")
        budget = self.config.server.default_deadline_s if time_remaining is None else time_remaining
        deadline = time.monotonic() + budget
        request_id = call.request_id or uuid.uuid4().hex
        self._inflight += 1
        self.metrics.inflight_calls.inc()
        try:
            async with asyncio.timeout(budget):
                outcomes = await asyncio.gather(*(self._classify_image(image, model, deadline)
                                                  for image in call.images))
        except TimeoutError as exc:
            raise DeadlineExceeded(f"deadline of {budget:.3f}s passed before all images were scored") from exc
        finally:
            self._inflight -= 1
            self.metrics.inflight_calls.dec()
        for outcome in outcomes:
            outcome_label = "ok" if outcome.error is None else outcome.error.code.value.lower()
            self.metrics.images.labels(outcome_label, outcome.decision.name).inc()
        self._record_audit(call, request_id, model, outcomes)
        return ClassifyResult(results=outcomes, post_decision=max(o.decision for o in outcomes),
                              model_name=model.metadata.name, model_version=model.version, request_id=request_id)

    async def _classify_image(self, image: ImageInput, model: LoadedModel, deadline: float) -> ImageOutcome:
        outcome = ImageOutcome(id=image.id, url=image.url)
        try:
            data = await self._obtain(image, deadline)
            started = time.perf_counter()
            outcome.content_sha256, tensor = await asyncio.get_running_loop().run_in_executor(
                self._decode_pool, self._hash_and_decode, data, model.input_hw)
            self.metrics.stage_seconds.labels("decode").observe(time.perf_counter() - started)
            if isinstance(tensor, ImageError):
                raise tensor
            row = await model.batcher.submit(tensor)
        except ImageError as exc:
            outcome.error = exc
            outcome.decision = self.on_error
            return outcome
        names = model.metadata.class_names
        outcome.scores = {name: float(row[i]) for i, name in enumerate(names)}
        outcome.top_class = names[int(np.argmax(row))]
        outcome.decision = model.policy.decide(outcome.scores)
        if outcome.decision == Decision.PASS:
            outcome.audit_sampled = is_sampled(outcome.content_sha256, self.config.audit.sample_rate,
                                               self.config.audit.sample_salt)
        return outcome

    async def _obtain(self, image: ImageInput, deadline: float) -> bytes:
        if image.content is not None:
            self.metrics.inline_bytes.inc(len(image.content))
            return image.content
        started = time.perf_counter()
        timeout = min(self.config.fetch.timeout_s, max(0.0, deadline - time.monotonic()))
        try:
            data = await self.fetcher.fetch(image.url, timeout)
        finally:
            self.metrics.stage_seconds.labels("fetch").observe(time.perf_counter() - started)
        self.metrics.fetched_bytes.inc(len(data))
        return data

    def _hash_and_decode(self, data: bytes, size: tuple[int, int]) -> tuple[str, np.ndarray | ImageError]:
        # One trip to the decode pool for both: hashing 10 MB on the event loop would stall it.
        # The error is returned, not raised, so the hash of an undecodable image still reaches
        # the response.
        digest = hashlib.sha256(data).hexdigest()
        try:
            return digest, decode_image(data, size, self.config.decode)
        except ImageError as exc:
            return digest, exc

    def _record_audit(self, call: ClassifyCall, request_id: str, model: LoadedModel,
                      outcomes: list[ImageOutcome]) -> None:
        if self.audit is None:
            return
        now = time.time()
        for outcome in outcomes:
            if outcome.error is not None:
                continue
            if outcome.decision != Decision.PASS:
                reason = AuditReason.FLAGGED
            elif outcome.audit_sampled:
                reason = AuditReason.SAMPLED
            else:
                continue
            self.audit.submit(AuditRecord(
                request_id=request_id, post_id=call.post_id, image_id=outcome.id, url=outcome.url,
                content_sha256=outcome.content_sha256, scores=outcome.scores, top_class=outcome.top_class,
                decision=outcome.decision.name, reason=reason, model_name=model.metadata.name,
                model_version=model.version, created_at=now))
