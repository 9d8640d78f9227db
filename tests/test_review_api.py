"""What the review tool needs from the Audit API beyond NextForReview / SubmitVerdicts /
ReleaseReview: a post's records (GetPost), progress counts (ReviewStats), undo
(RetractVerdicts), and the filter's post ids, skipped records and creation dates. Store level on
both stores, then over real gRPC."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from moderation_api.v1 import audit_pb2 as apb
from moderation_api.v1 import audit_pb2_grpc as apb_grpc
from server.audit.records import AuditReason, AuditRecord, ReviewFilter, Verdict, VerdictOutcome
from tests.audit_support import audit_store_fixture  # noqa: F401
from tests.harness import ServerThread, make_config

CLASSES = ("ham", "sexual", "personal_info")
T0 = 1_700_000_000.0


def record(i: int, post: str, reason: AuditReason = AuditReason.FLAGGED, top: str = "sexual") -> AuditRecord:
    scores = {c: (0.8 if c == top else 0.1) for c in CLASSES}
    return AuditRecord(
        request_id=f"req-{post}",
        post_id=post,
        image_id=f"img-{i}",
        url=f"http://images.test/{i}.jpg",
        content_sha256=f"{i:064x}",
        scores=scores,
        top_class=top,
        decision="REVIEW",
        reason=reason,
        model_name="moderation",
        model_version="1",
        created_at=T0 + i,
        record_id=f"rec-{i:04d}",
    )


def ids(records) -> list[str]:
    return [r.record_id for r in records]


def test_filter_by_post_skipped_records_and_creation_time(audit_store):
    audit_store.write([record(0, "a"), record(1, "a"), record(2, "b"), record(3, "c"), record(4, "c")])
    assert ids(audit_store.next_for_review("r1", 10, 60, ReviewFilter(post_ids=("a", "c")), now=T0)) == [
        "rec-0000",
        "rec-0001",
        "rec-0003",
        "rec-0004",
    ]
    audit_store.release("r1", ["rec-0000", "rec-0001", "rec-0003", "rec-0004"])
    assert ids(
        audit_store.next_for_review("r1", 10, 60, ReviewFilter(exclude_record_ids=("rec-0001", "rec-0002")), now=T0)
    ) == ["rec-0000", "rec-0003", "rec-0004"]
    audit_store.release("r1", ["rec-0000", "rec-0003", "rec-0004"])
    window = ReviewFilter(created_after=T0 + 1, created_before=T0 + 3)
    assert ids(audit_store.next_for_review("r1", 10, 60, window, now=T0)) == ["rec-0001", "rec-0002"]


def test_post_records_carry_verdicts_and_leases(audit_store):
    audit_store.write([record(0, "a"), record(1, "a"), record(2, "a"), record(3, "b")])
    audit_store.submit_verdicts([Verdict(label="ham", operator="alice", record_id="rec-0000")], now=T0 + 10)
    audit_store.next_for_review("bob", 1, 60, ReviewFilter(exclude_record_ids=("rec-0000",)), now=T0 + 20)
    post = audit_store.post_records("a", 10)
    assert ids(post) == ["rec-0000", "rec-0001", "rec-0002"]
    assert (post[0].verdict_label, post[0].verdict_operator, post[0].verdict_at) == ("ham", "alice", T0 + 10)
    assert (post[1].lease_owner, post[1].lease_expires_at) == ("bob", T0 + 80)
    assert post[2].lease_owner is None and post[2].verdict_label is None
    assert ids(audit_store.post_records("a", 2)) == ["rec-0000", "rec-0001"]
    assert audit_store.post_records("nope", 10) == []


def test_review_stats_count_todays_verdicts_and_the_backlog(audit_store):
    audit_store.write([record(i, f"p{i}", AuditReason.SAMPLED if i >= 4 else AuditReason.FLAGGED) for i in range(6)])
    audit_store.submit_verdicts([Verdict(label="ham", operator="alice", record_id="rec-0000")], now=T0 - 100)
    audit_store.submit_verdicts(
        [
            Verdict(label="ham", operator="alice", record_id="rec-0001"),
            Verdict(label="sexual", operator="bob", record_id="rec-0004"),
        ],
        now=T0 + 100,
    )
    stats = audit_store.review_stats("alice", T0)
    assert (stats.judged_by_operator, stats.judged, stats.pending) == (1, 2, 3)
    assert audit_store.review_stats("alice", None).judged_by_operator == 2
    assert audit_store.review_stats("", T0).judged_by_operator == 0
    sampled = audit_store.review_stats("bob", T0, ReviewFilter(reasons=("sampled",)))
    assert (sampled.judged_by_operator, sampled.pending) == (1, 1)


def test_retract_takes_back_only_the_operators_own_verdicts(audit_store):
    audit_store.write([record(0, "a"), record(1, "a"), record(2, "b")])
    audit_store.submit_verdicts(
        [
            Verdict(label="sexual", operator="alice", record_id="rec-0000"),
            Verdict(label="ham", operator="bob", record_id="rec-0001"),
        ],
        now=T0,
    )
    retracted = audit_store.retract_verdicts("alice", ["rec-0000", "rec-0001", "rec-0002", "ghost"], 60, now=T0 + 5)
    assert retracted == ["rec-0000"]
    (back,) = audit_store.get(["rec-0000"])
    assert back.verdict_label is None and back.verdict_at is None and back.verdict_operator is None
    assert (back.lease_owner, back.lease_expires_at) == ("alice", T0 + 65)
    # Leased back to alice: bob does not get it, alice does; then a new verdict is APPLIED once.
    assert "rec-0000" not in ids(audit_store.next_for_review("bob", 10, 60, now=T0 + 6))
    assert "rec-0000" in ids(audit_store.next_for_review("alice", 10, 60, now=T0 + 7))
    (result,) = audit_store.submit_verdicts([Verdict(label="ham", operator="alice", record_id="rec-0000")])
    assert result.outcome == VerdictOutcome.APPLIED
    assert audit_store.get(["rec-0001"])[0].verdict_label == "ham"  # bob's stays


@pytest.fixture
def served(model_repo, tmp_path):
    running = ServerThread(make_config(model_repo, tmp_path / "audit.sqlite3", audit={"drift_interval_s": 0})).start()
    running.service.audit_components.store.write(
        [record(0, "a"), record(1, "a"), record(2, "b", AuditReason.SAMPLED, "ham")]
    )
    yield running
    running.stop()


def test_get_post_stats_and_retract_over_grpc(served):
    with served.channel() as channel:
        stub = apb_grpc.AuditStub(channel)
        window = apb.ReviewFilter(
            post_ids=["a", "b"],
            exclude_record_ids=["rec-0001"],
            created_after=Timestamp(seconds=int(T0)),
            created_before=Timestamp(seconds=int(T0) + 5),
        )
        got = stub.NextForReview(apb.NextForReviewRequest(reviewer_id="alice", filter=window, lease_seconds=60))
        assert [i.record_id for i in got.items] == ["rec-0000", "rec-0002"]
        stub.SubmitVerdicts(
            apb.SubmitVerdictsRequest(operator_id="alice", verdicts=[apb.Verdict(record_id="rec-0000", label="sexual")])
        )

        post = stub.GetPost(apb.GetPostRequest(post_id="a")).items
        assert [(i.record_id, i.verdict_label, i.verdict_operator, i.lease_owner) for i in post] == [
            ("rec-0000", "sexual", "alice", ""),
            ("rec-0001", "", "", ""),
        ]
        assert post[0].verdict_at.seconds > T0 and not post[1].HasField("verdict_at")

        stats = stub.ReviewStats(apb.ReviewStatsRequest(operator_id="alice", since=Timestamp(seconds=int(T0))))
        assert (stats.judged_by_operator, stats.judged, stats.pending) == (1, 1, 2)
        flagged = stub.ReviewStats(apb.ReviewStatsRequest(filter=apb.ReviewFilter(reasons=[apb.AUDIT_REASON_FLAGGED])))
        assert (flagged.judged_by_operator, flagged.pending) == (0, 1)

        assert (
            list(
                stub.RetractVerdicts(apb.RetractVerdictsRequest(operator_id="bob", record_ids=["rec-0000"])).record_ids
            )
            == []
        )
        assert list(
            stub.RetractVerdicts(
                apb.RetractVerdictsRequest(operator_id="alice", record_ids=["rec-0000"], lease_seconds=30)
            ).record_ids
        ) == ["rec-0000"]
        (item,) = [i for i in stub.GetPost(apb.GetPostRequest(post_id="a")).items if i.record_id == "rec-0000"]
        assert item.verdict_label == "" and item.lease_owner == "alice"


@pytest.mark.parametrize(
    ("call", "request_", "message"),
    [
        ("GetPost", apb.GetPostRequest(), "post id is required"),
        ("GetPost", apb.GetPostRequest(post_id="p" * 300), "post id is 300 characters"),
        ("RetractVerdicts", apb.RetractVerdictsRequest(record_ids=["x"]), "operator id is required"),
        (
            "RetractVerdicts",
            apb.RetractVerdictsRequest(operator_id="o", record_ids=["x"] * 201),
            "201 records, limit 200",
        ),
        ("RetractVerdicts", apb.RetractVerdictsRequest(operator_id="o", lease_seconds=100_000), "lease of 100000s"),
        ("ReviewStats", apb.ReviewStatsRequest(filter=apb.ReviewFilter(reasons=[0])), "AUDIT_REASON_UNSPECIFIED"),
        (
            "NextForReview",
            apb.NextForReviewRequest(reviewer_id="r", filter=apb.ReviewFilter(exclude_record_ids=["x"] * 1001)),
            "filter.exclude_record_ids: 1001 ids, limit 1000",
        ),
    ],
)
def test_malformed_review_tool_requests_are_invalid_argument(served, call, request_, message):
    with served.channel() as channel, pytest.raises(grpc.RpcError) as info:
        getattr(apb_grpc.AuditStub(channel), call)(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
