"""What the SQLite and PostgreSQL audit stores share: every query, written once, so both stores
behave the same. A subclass supplies connections and transactions (`_transaction`), its
placeholder style and its row-locking clause; the queries here use `?` placeholders."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from server.audit import schema
from server.audit.records import (
    AuditRecord,
    ReviewFilter,
    ReviewStats,
    StoredRecord,
    Verdict,
    VerdictOutcome,
    VerdictResult,
)
from server.errors import InvalidRequest

INSERT_COLUMNS = (
    "record_id",
    "created_at",
    "request_id",
    "post_id",
    "image_id",
    "url",
    "content_sha256",
    "scores",
    "top_class",
    "decision",
    "reason",
    "model_name",
    "model_version",
    "sample_weight",
    "reading",
)
SELECT_COLUMNS = (
    *INSERT_COLUMNS,
    "verdict_class",
    "verdict_operator",
    "verdict_at",
    "verdict_note",
    "lease_owner",
    "lease_expires_at",
)
_SELECT = ", ".join(SELECT_COLUMNS)
# SQLite allows 32766 host parameters per statement; PostgreSQL 65535. Stay well below both.
_CHUNK = 500


class Tx(Protocol):
    """One open transaction. SQL uses `?` placeholders whatever the dialect."""

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]: ...

    def run(self, sql: str, params: Sequence = ()) -> int: ...

    def run_many(self, sql: str, rows: Sequence[Sequence]) -> None: ...


@dataclass(frozen=True)
class DriftRow:
    created_at: float
    model_name: str
    model_version: str
    scores: dict[str, float]
    top_class: str
    decision: str
    reason: str
    sample_weight: float
    verdict_label: str | None


def record_row(record: AuditRecord) -> tuple:
    return (
        record.record_id,
        record.created_at,
        record.request_id,
        record.post_id,
        record.image_id,
        record.url,
        record.content_sha256,
        json.dumps(record.scores, sort_keys=True),
        record.top_class,
        record.decision,
        record.reason.value,
        record.model_name,
        record.model_version,
        float(record.sample_weight),
        reading_json(record.reading),
    )


def reading_json(reading: dict) -> str:
    """The reading column's text: model.reader.types.reading_record()'s dict, compact and with
    sorted keys; '{}' for a record made without a reader."""
    return json.dumps(reading or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _reading(text: str | None) -> dict:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _stored(row: Sequence) -> StoredRecord:
    values = dict(zip(SELECT_COLUMNS, row, strict=True))
    values["scores"] = json.loads(values["scores"])
    values["reading"] = _reading(values["reading"])
    values["verdict_label"] = values.pop("verdict_class")
    return StoredRecord(**values)


def _in(column: str, values: Sequence) -> tuple[str, list]:
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def _filter_where(flt: ReviewFilter, by_record: bool = True) -> tuple[list[str], list]:
    """SQL conditions and their parameters for a review filter; by_record=False leaves out the
    parts that name posts and records (counting a backlog ignores them)."""
    where: list[str] = []
    params: list = []
    columns = [
        ("reason", flt.reasons),
        ("top_class", flt.top_classes),
        ("decision", flt.decisions),
        ("model_version", flt.model_versions),
    ]
    if by_record:
        columns.append(("post_id", flt.post_ids))
    for column, values in columns:
        if values:
            clause, more = _in(column, values)
            where.append(clause)
            params.extend(more)
    if by_record and flt.exclude_record_ids:
        where.append(f"record_id NOT IN ({', '.join('?' for _ in flt.exclude_record_ids)})")
        params.extend(flt.exclude_record_ids)
    if flt.model_name:
        where.append("model_name = ?")
        params.append(flt.model_name)
    if flt.created_after is not None:
        where.append("created_at >= ?")
        params.append(flt.created_after)
    if flt.created_before is not None:
        where.append("created_at < ?")
        params.append(flt.created_before)
    return where, params


class SQLAuditStore:
    dialect: str = ""
    # Appended to the SELECTs whose rows a transaction goes on to update, so two replicas
    # never hand out or judge the same row at once (PostgreSQL; SQLite locks the whole file).
    lock_rows: str = ""
    skip_locked: str = ""

    def _transaction(self, write: bool) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- migrations --------------------------------------------------------------------------

    def _migrate_in(self, tx: Tx) -> list[int]:
        """Applies the missing migrations inside `tx` (which the subclass has made exclusive)."""
        tx.run(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at "
            + ("REAL" if self.dialect == "sqlite" else "DOUBLE PRECISION")
            + " NOT NULL)"
        )
        done = {row[0] for row in tx.query("SELECT version FROM schema_migrations")}
        applied = []
        for version in range(1, len(schema.MIGRATIONS) + 1):
            if version in done:
                continue
            for statement in schema.statements(version, self.dialect):
                tx.run(statement)
            tx.run("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time()))
            applied.append(version)
        return applied

    def migration_versions(self) -> list[int]:
        with self._transaction(write=False) as tx:
            return sorted(row[0] for row in tx.query("SELECT version FROM schema_migrations"))

    # -- records -----------------------------------------------------------------------------

    def write(self, records: Sequence[AuditRecord]) -> None:
        """Inserts the records; a record_id already present is skipped, so replays and retries
        never make a second row."""
        if not records:
            return
        sql = (
            f"INSERT INTO audit_records ({', '.join(INSERT_COLUMNS)}) VALUES "
            f"({', '.join('?' for _ in INSERT_COLUMNS)}) ON CONFLICT (record_id) DO NOTHING"
        )
        with self._transaction(write=True) as tx:
            tx.run_many(sql, [record_row(r) for r in records])

    def get(self, record_ids: Sequence[str]) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        with self._transaction(write=False) as tx:
            for start in range(0, len(record_ids), _CHUNK):
                where, params = _in("record_id", record_ids[start : start + _CHUNK])
                out.extend(_stored(r) for r in tx.query(f"SELECT {_SELECT} FROM audit_records WHERE {where}", params))
        return out

    def count(self) -> int:
        with self._transaction(write=False) as tx:
            return int(tx.query("SELECT COUNT(*) FROM audit_records")[0][0])

    # -- review ------------------------------------------------------------------------------

    def next_for_review(
        self, reviewer: str, limit: int, lease_s: float, flt: ReviewFilter | None = None, now: float | None = None
    ) -> list[StoredRecord]:
        """Up to `limit` unjudged records, oldest first, leased to `reviewer` until now + lease_s.
        A record leased to someone else is skipped until its lease expires; the reviewer's own
        leased records come back again (a reloaded review page gets its items back), with the
        lease renewed."""
        now = time.time() if now is None else now
        flt = flt or ReviewFilter()
        where = ["verdict_at IS NULL", "(lease_expires_at IS NULL OR lease_expires_at <= ? OR lease_owner = ?)"]
        params: list = [now, reviewer]
        more_where, more_params = _filter_where(flt)
        where += more_where
        params += more_params
        sql = (
            f"SELECT {_SELECT} FROM audit_records WHERE {' AND '.join(where)} "
            f"ORDER BY created_at, record_id LIMIT ?{self.skip_locked}"
        )
        expires = now + lease_s
        with self._transaction(write=True) as tx:
            rows = [_stored(r) for r in tx.query(sql, [*params, limit])]
            tx.run_many(
                "UPDATE audit_records SET lease_owner = ?, lease_expires_at = ? WHERE record_id = ?",
                [(reviewer, expires, r.record_id) for r in rows],
            )
        return [dataclasses.replace(r, lease_owner=reviewer, lease_expires_at=expires) for r in rows]

    def release(self, reviewer: str, record_ids: Sequence[str]) -> int:
        """Hands leased records back before their lease expires. Returns how many were released."""
        released = 0
        with self._transaction(write=True) as tx:
            for start in range(0, len(record_ids), _CHUNK):
                where, params = _in("record_id", record_ids[start : start + _CHUNK])
                released += tx.run(
                    f"UPDATE audit_records SET lease_owner = NULL, lease_expires_at = NULL "
                    f"WHERE lease_owner = ? AND verdict_at IS NULL AND {where}",
                    [reviewer, *params],
                )
        return released

    def post_records(self, post_id: str, limit: int) -> list[StoredRecord]:
        """The records of one post, judged or not, oldest first."""
        with self._transaction(write=False) as tx:
            rows = tx.query(
                f"SELECT {_SELECT} FROM audit_records WHERE post_id = ? ORDER BY created_at, record_id LIMIT ?",
                (post_id, limit),
            )
        return [_stored(r) for r in rows]

    def review_stats(self, operator: str, since: float | None, flt: ReviewFilter | None = None) -> ReviewStats:
        """Verdicts since `since` (by `operator`, and by everyone), and the records matching the
        filter still waiting for a verdict."""
        judged_where, judged_params = ["verdict_at IS NOT NULL"], []
        if since is not None:
            judged_where.append("verdict_at >= ?")
            judged_params.append(since)
        pending_where, pending_params = _filter_where(flt or ReviewFilter(), by_record=False)
        with self._transaction(write=False) as tx:
            judged = tx.query(f"SELECT COUNT(*) FROM audit_records WHERE {' AND '.join(judged_where)}", judged_params)[
                0
            ][0]
            mine = (
                tx.query(
                    f"SELECT COUNT(*) FROM audit_records WHERE {' AND '.join(judged_where)} AND verdict_operator = ?",
                    [*judged_params, operator],
                )[0][0]
                if operator
                else 0
            )
            pending = tx.query(
                "SELECT COUNT(*) FROM audit_records WHERE " + " AND ".join(["verdict_at IS NULL", *pending_where]),
                pending_params,
            )[0][0]
        return ReviewStats(judged_by_operator=int(mine), judged=int(judged), pending=int(pending))

    def retract_verdicts(
        self, operator: str, record_ids: Sequence[str], lease_s: float, now: float | None = None
    ) -> list[str]:
        """Takes back the verdicts `operator` gave on these records and leases the records back
        to them (an undo); a record judged by someone else, or not at all, is left alone.
        Returns the record ids whose verdict was taken back."""
        now = time.time() if now is None else now
        retracted: list[str] = []
        with self._transaction(write=True) as tx:
            for start in range(0, len(record_ids), _CHUNK):
                where, params = _in("record_id", record_ids[start : start + _CHUNK])
                rows = tx.query(
                    f"SELECT record_id FROM audit_records WHERE verdict_operator = ? AND "
                    f"verdict_at IS NOT NULL AND {where}{self.lock_rows}",
                    [operator, *params],
                )
                retracted.extend(r[0] for r in rows)
            tx.run_many(
                "UPDATE audit_records SET verdict_class = NULL, verdict_operator = NULL, verdict_at = NULL, "
                "verdict_note = NULL, lease_owner = ?, lease_expires_at = ? WHERE record_id = ?",
                [(operator, now + lease_s, record_id) for record_id in retracted],
            )
        return retracted

    def submit_verdicts(
        self, verdicts: Sequence[Verdict], overwrite: bool = False, now: float | None = None
    ) -> list[VerdictResult]:
        """Applies the verdicts in one transaction and returns one result per verdict, in order.

        A verdict whose label is not one of its record's model classes fails the whole batch
        with InvalidRequest and nothing is written. Resubmitting the same label is UNCHANGED;
        another label on a judged record is CONFLICT unless `overwrite` (a correction)."""
        now = time.time() if now is None else now
        with self._transaction(write=True) as tx:
            found = self._resolve(tx, verdicts)
            problems = []
            for i, verdict in enumerate(verdicts):
                record = found.get(i)
                if record is not None and verdict.label not in record.scores:
                    problems.append(
                        f"verdicts[{i}] ({verdict.target}): label {verdict.label!r} is not a class of "
                        f"model {record.model_name} version {record.model_version} "
                        f"({', '.join(sorted(record.scores))})"
                    )
            if problems:
                raise InvalidRequest(
                    "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
                )
            results: list[VerdictResult] = []
            updates = []
            current: dict[str, str | None] = {}
            for i, verdict in enumerate(verdicts):
                record = found.get(i)
                if record is None:
                    results.append(
                        VerdictResult(verdict.target, "", VerdictOutcome.NOT_FOUND, f"no audit record {verdict.target}")
                    )
                    continue
                label = current.get(record.record_id, record.verdict_label)
                if label == verdict.label:
                    results.append(VerdictResult(verdict.target, record.record_id, VerdictOutcome.UNCHANGED))
                    continue
                if label is not None and not overwrite:
                    results.append(
                        VerdictResult(
                            verdict.target,
                            record.record_id,
                            VerdictOutcome.CONFLICT,
                            f"already judged {label!r}; set overwrite to correct it",
                        )
                    )
                    continue
                current[record.record_id] = verdict.label
                judged_at = now if verdict.judged_at is None else verdict.judged_at
                updates.append((verdict.label, verdict.operator, judged_at, verdict.note or None, record.record_id))
                results.append(VerdictResult(verdict.target, record.record_id, VerdictOutcome.APPLIED))
            tx.run_many(
                "UPDATE audit_records SET verdict_class = ?, verdict_operator = ?, verdict_at = ?, "
                "verdict_note = ?, lease_owner = NULL, lease_expires_at = NULL WHERE record_id = ?",
                updates,
            )
        return results

    def _resolve(self, tx: Tx, verdicts: Sequence[Verdict]) -> dict[int, StoredRecord]:
        """verdict index -> its record, for the verdicts whose record exists (locked for update)."""
        by_id: dict[str, StoredRecord] = {}
        ids = sorted({v.record_id for v in verdicts if v.record_id})
        for start in range(0, len(ids), _CHUNK):
            where, params = _in("record_id", ids[start : start + _CHUNK])
            for row in tx.query(f"SELECT {_SELECT} FROM audit_records WHERE {where}{self.lock_rows}", params):
                record = _stored(row)
                by_id[record.record_id] = record
        found: dict[int, StoredRecord] = {}
        for i, verdict in enumerate(verdicts):
            if verdict.record_id:
                if verdict.record_id in by_id:
                    found[i] = by_id[verdict.record_id]
                continue
            rows = tx.query(
                f"SELECT {_SELECT} FROM audit_records WHERE request_id = ? AND image_id = ? "
                f"ORDER BY created_at{self.lock_rows}",
                (verdict.request_id, verdict.image_id),
            )
            # A caller that reused a request id has several; the verdict goes to none of them
            # rather than to a guess.
            if len(rows) == 1:
                found[i] = _stored(rows[0])
        return found

    # -- reading for drift, dashboards and exports -------------------------------------------

    def drift_rows(self, since: float, limit: int) -> list[DriftRow]:
        """The newest `limit` records created at or after `since`."""
        with self._transaction(write=False) as tx:
            rows = tx.query(
                "SELECT created_at, model_name, model_version, scores, top_class, decision, reason, "
                "sample_weight, verdict_class FROM audit_records WHERE created_at >= ? "
                "ORDER BY created_at DESC LIMIT ?",
                (since, limit),
            )
        return [DriftRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows]

    def backlog(self) -> tuple[dict[str, int], float | None]:
        """Unjudged records per reason, and the creation time of the oldest one."""
        with self._transaction(write=False) as tx:
            counts = {
                r[0]: int(r[1])
                for r in tx.query("SELECT reason, COUNT(*) FROM audit_records WHERE verdict_at IS NULL GROUP BY reason")
            }
            oldest = tx.query("SELECT MIN(created_at) FROM audit_records WHERE verdict_at IS NULL")[0][0]
        return counts, oldest

    def judged(
        self, since: float | None = None, until: float | None = None, model_name: str = ""
    ) -> Iterator[StoredRecord]:
        """Judged records in verdict order, for exports."""
        where: list[str] = ["verdict_at IS NOT NULL"]
        params: list[float | str] = []
        if since is not None:
            where.append("verdict_at >= ?")
            params.append(since)
        if until is not None:
            where.append("verdict_at < ?")
            params.append(until)
        if model_name:
            where.append("model_name = ?")
            params.append(model_name)
        with self._transaction(write=False) as tx:
            rows = tx.query(
                f"SELECT {_SELECT} FROM audit_records WHERE {' AND '.join(where)} ORDER BY verdict_at, record_id",
                params,
            )
        return iter([_stored(r) for r in rows])
