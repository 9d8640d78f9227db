"""The audit loop's parts, assembled from the config: one store shared by the writer (records
in), the review service (records out to reviewers, verdicts in) and the drift monitor (gauges)."""

from __future__ import annotations

import logging
import threading

from server.audit.drift import DriftMonitor, RepositoryBaselines
from server.audit.review_service import ReviewService
from server.audit.writer import AuditWriter, open_store
from server.config import Config
from server.errors import AuditStoreUnavailable
from server.metrics import Metrics

log = logging.getLogger(__name__)


class AuditComponents:
    def __init__(self, config: Config, metrics: Metrics):
        audit = config.audit
        self._metrics = metrics
        self.store = open_store(audit.url, timeout_s=audit.write_timeout_s)
        self.writer = AuditWriter(self.store, audit, metrics)
        self.service = ReviewService(self.store, audit, metrics)
        self.drift = DriftMonitor(
            self.store,
            metrics,
            RepositoryBaselines(config.model.repository),
            audit.drift_windows,
            audit.drift_interval_s,
            audit.drift_min_records,
            audit.drift_max_records,
        )

    def start(self) -> None:
        self.drift.start()
        # The store-up gauge otherwise waits for the first write, which an idle replica with
        # drift computation turned off may never make.
        threading.Thread(target=self._probe, name="audit-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            self.store.migration_versions()
        except AuditStoreUnavailable as exc:
            log.warning("audit store unavailable at start (records spill until it is back): %s", exc)
            self._metrics.audit_store_up.set(0)
        except Exception:
            log.debug("audit store probe failed", exc_info=True)  # closed already: shutting down
        else:
            self._metrics.audit_store_up.set(1)

    def close(self) -> None:
        """Stops the drift monitor, then flushes the writer's queue and closes the store."""
        self.drift.stop()
        self.writer.close()
