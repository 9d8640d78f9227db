"""The Classify data flow, knowing nothing of gRPC: validate -> fetch -> decode -> batch ->
policy -> audit. Per-image problems become that image's outcome; whole-call problems are
raised as the typed exceptions of server/errors.py."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import numpy as np
from PIL import Image

from model.reader.types import reading_record
from model.repository import SIGNATURE_NAME
from server.audit.records import AuditReason, AuditRecord
from server.audit.writer import AuditWriter
from server.config import Config
from server.errors import DeadlineExceeded, ImageError, InvalidRequest, NotFound, Overloaded
from server.metrics import Metrics
from server.pipeline.audit_sampling import AuditPolicy
from server.pipeline.fetch import Fetcher
from server.pipeline.validate import validate_call
from server.serving.batch import ItemResult
from server.serving.model_manager import LoadedModel, ModelManager
from server.types import ClassifyCall, ClassifyResult, Decision, ImageInput, ImageOutcome

log = logging.getLogger(__name__)


class ModerationCore:
    def __init__(
        self, config: Config, models: ModelManager, fetcher: Fetcher, audit: AuditWriter | None, metrics: Metrics
    ):
        self.config = config
        self.models = models
        self.fetcher = fetcher
        self.audit = audit
        self.metrics = metrics
        self.on_error = Decision[config.policy.on_error.upper()]
        self.audit_policy = AuditPolicy(config.audit)
        self._inflight = 0

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
                outcomes = await asyncio.gather(
                    *(self._classify_image(image, model, deadline) for image in call.images)
                )
        except TimeoutError as exc:
            raise DeadlineExceeded(f"deadline of {budget:.3f}s passed before all images were scored") from exc
        finally:
            self._inflight -= 1
            self.metrics.inflight_calls.dec()
        for outcome in outcomes:
            outcome_label = "ok" if outcome.error is None else outcome.error.code.value.lower()
            self.metrics.images.labels(outcome_label, outcome.decision.name).inc()
        self._record_audit(call, request_id, model, outcomes)
        return ClassifyResult(
            results=outcomes,
            post_decision=max(o.decision for o in outcomes),
            model_name=model.metadata.name,
            model_version=model.version,
            request_id=request_id,
        )

    async def _classify_image(self, image: ImageInput, model: LoadedModel, deadline: float) -> ImageOutcome:
        outcome = ImageOutcome(id=image.id, url=image.url)
        try:
            data = await self._obtain(image, deadline)
        except ImageError as exc:
            return self._failed(outcome, exc)
        result = await model.batcher.submit(data)
        outcome.content_sha256 = result.content_sha256
        self.metrics.stage_seconds.labels("decode").observe(result.decode_s)
        if result.error is not None:
            return self._failed(outcome, result.error)
        row = _scores(result)
        self.metrics.stage_seconds.labels("inference").observe(result.inference_s)
        names = model.metadata.class_names
        outcome.scores = {name: float(row[i]) for i, name in enumerate(names)}
        outcome.top_class = names[int(np.argmax(row))]
        outcome.reading = result.reading
        if result.reading is not None:
            self.metrics.stage_seconds.labels("reading").observe(result.reading_s)
            self.metrics.reading.labels(result.reading.status.value.lower()).inc()
            for finding in result.reading.findings:
                self.metrics.findings.labels(finding.entity.value.lower()).inc()
        decision, outcome.reasons = model.policy.explain(outcome.scores, result.reading)
        choice = self.audit_policy.choose(decision, outcome.scores, outcome.top_class, outcome.content_sha256)
        outcome.decision, outcome.audit_sampled = choice.decision, choice.sampled
        outcome.audit_reason = choice.reason.value if choice.reason else ""
        return outcome

    def _failed(self, outcome: ImageOutcome, error: ImageError) -> ImageOutcome:
        outcome.error = error
        outcome.decision = self.on_error
        return outcome

    async def predict_tensors(
        self, model_name: str, version: int | None, signature: str, images: np.ndarray
    ) -> tuple[np.ndarray, LoadedModel]:
        """TensorFlow Serving's Predict: uint8 or float [N, H, W, 3] images -> [N, classes] scores,
        through the same batcher as Classify (so both kinds of call share batches)."""
        model = self.models.get()
        if model_name != model.metadata.name:
            raise NotFound(f"model {model_name!r} is not served here; this server serves {model.metadata.name!r}")
        if version is not None and version != model.metadata.version:
            raise NotFound(f"version {version} of {model_name!r} is not loaded; version {model.version} is")
        if signature not in ("", SIGNATURE_NAME):
            raise NotFound(f"signature {signature!r} does not exist; use {SIGNATURE_NAME!r}")
        if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
            raise InvalidRequest(f"images must be [batch, height, width, 3], got {list(images.shape)}")
        if images.shape[0] > self.config.limits.max_predict_images:
            raise InvalidRequest(f"{images.shape[0]} images, limit {self.config.limits.max_predict_images}")
        if images.dtype != np.uint8:
            images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        size = model.metadata.input_size
        if images.shape[1:3] != (size, size):
            images = np.stack(
                [np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR)) for img in images]
            )
        results = await asyncio.gather(*(model.batcher.submit(img) for img in images))
        for result in results:
            if result.error is not None:
                raise result.error
        return np.stack([_scores(r) for r in results]), model

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

    def _record_audit(
        self, call: ClassifyCall, request_id: str, model: LoadedModel, outcomes: list[ImageOutcome]
    ) -> None:
        if self.audit is None:
            return
        now = time.time()
        for outcome in outcomes:
            if outcome.error is not None or not outcome.audit_reason:
                continue
            reason = AuditReason(outcome.audit_reason)
            self.audit.submit(
                AuditRecord(
                    request_id=request_id,
                    post_id=call.post_id,
                    image_id=outcome.id,
                    url=outcome.url,
                    content_sha256=outcome.content_sha256,
                    scores=outcome.scores,
                    top_class=outcome.top_class,
                    decision=outcome.decision.name,
                    reason=reason,
                    model_name=model.metadata.name,
                    model_version=model.version,
                    created_at=now,
                    sample_weight=self.audit_policy.sample_weight(reason, outcome.top_class),
                    reading=reading_record(outcome.reading) if outcome.reading is not None else {},
                )
            )


def _scores(result: ItemResult) -> np.ndarray:
    """The scores of a result without an error, which every such result has."""
    assert result.scores is not None, "a result has scores or an error"
    return result.scores
