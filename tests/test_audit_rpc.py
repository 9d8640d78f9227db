"""The Audit RPCs and the verdict CLI against the real server on loopback, and the hand-off to
training: classify -> sampled -> reviewed -> verdict -> export -> the exported rows carry the
operator's label for that image."""

from __future__ import annotations

import csv
import json
import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from model.reader.types import EntityType, Finding, ReadingResult, ReadingStatus, reading_record
from moderation_api.v1 import audit_pb2 as apb
from moderation_api.v1 import audit_pb2_grpc as apb_grpc
from moderation_api.v1 import moderation_pb2 as pb
from server.audit import cli
from server.audit.records import AuditReason, AuditRecord
from server.audit.verdicts import EXPORT_COLUMNS
from tests.conftest import encode
from tests.harness import ServerThread, make_config
from training.audit_log import read_verdict_export

GREEN, RED, GREY = (0, 200, 0), (255, 0, 0), (128, 128, 128)


@pytest.fixture
def audited(model_repo, tmp_path, image_host):
    """A server that samples every confident ham PASS and calls a top score under 0.4 unsure."""
    audit_path = tmp_path / "audit.sqlite3"
    config = make_config(
        model_repo,
        audit_path,
        allow=(image_host.allow_entry,),
        audit={
            "sample_rate": 0.0,
            "class_sample_rates": "ham=1.0",
            "low_confidence_min": 0.0,
            "low_confidence_max": 0.4,
            "drift_interval_s": 0,
        },
    )
    running = ServerThread(config).start()
    running.audit_url = f"sqlite:///{audit_path}"
    yield running
    running.stop()


def audit_stub(channel: grpc.Channel) -> apb_grpc.AuditStub:
    return apb_grpc.AuditStub(channel)


def classify_post(server: ServerThread, image_host) -> pb.ClassifyResponse:
    image_host.add("/green.png", encode(GREEN, fmt="PNG"), content_type="image/png")
    with server.channel() as channel:
        response = server.stub(channel).Classify(
            pb.ClassifyRequest(
                post_id="post-42",
                request_id="req-42",
                images=[
                    pb.ImageInput(id="cat", url=image_host.url("/green.png")),
                    pb.ImageInput(id="nude", content=encode(RED, fmt="PNG")),
                    pb.ImageInput(id="fog", content=encode(GREY, fmt="PNG")),
                ],
            ),
            timeout=20,
        )
    server.service.audit.flush()
    return response


def test_classify_sample_review_verdict_export_hand_off(audited, image_host, tmp_path):
    response = classify_post(audited, image_host)
    by_id = {r.id: r for r in response.results}
    assert by_id["cat"].audit_sampled and pb.Decision.Name(by_id["cat"].decision) == "DECISION_PASS"
    assert not by_id["nude"].audit_sampled and pb.Decision.Name(by_id["nude"].decision) == "DECISION_BLOCK"
    # Grey: every score ~1/3, under the low-confidence bound: REVIEW, recorded as low_confidence.
    assert pb.Decision.Name(by_id["fog"].decision) == "DECISION_REVIEW" and not by_id["fog"].audit_sampled

    with audited.channel() as channel:
        stub = audit_stub(channel)
        sampled_only = apb.ReviewFilter(reasons=[apb.AUDIT_REASON_SAMPLED])
        alice = stub.NextForReview(
            apb.NextForReviewRequest(reviewer_id="alice", filter=sampled_only, lease_seconds=120)
        )
        assert [(i.image_id, i.post_id, i.request_id) for i in alice.items] == [("cat", "post-42", "req-42")]
        item = alice.items[0]
        assert item.url == image_host.url("/green.png") and item.content_sha256 == by_id["cat"].content_sha256
        assert item.reason == apb.AUDIT_REASON_SAMPLED and item.decision == pb.DECISION_PASS
        assert item.model_version == "1" and set(item.scores) == {"ham", "sexual", "personal_info"}
        assert 110 < item.lease_expires_at.seconds - time.time() <= 120
        # Leased to Alice: Bob gets nothing of it.
        assert not stub.NextForReview(apb.NextForReviewRequest(reviewer_id="bob", filter=sampled_only)).items
        everything = stub.NextForReview(apb.NextForReviewRequest(reviewer_id="bob"))
        assert sorted((i.image_id, apb.AuditReason.Name(i.reason)) for i in everything.items) == [
            ("fog", "AUDIT_REASON_LOW_CONFIDENCE"),
            ("nude", "AUDIT_REASON_FLAGGED"),
        ]

        # Alice judges the "ham" PASS to be sexual: the model missed it.
        judged = Timestamp(seconds=1_760_000_000)
        result = stub.SubmitVerdicts(
            apb.SubmitVerdictsRequest(
                operator_id="alice",
                verdicts=[apb.Verdict(record_id=item.record_id, label="sexual", note="cropped", judged_at=judged)],
            )
        )
        assert [(r.record_id, r.outcome) for r in result.results] == [(item.record_id, apb.VERDICT_APPLIED)]
        # Retried by the tool: idempotent. Named by the Classify call's ids: the same record.
        again = stub.SubmitVerdicts(
            apb.SubmitVerdictsRequest(
                verdicts=[apb.Verdict(request_id="req-42", image_id="cat", label="sexual", operator_id="alice")]
            )
        )
        assert again.results[0].outcome == apb.VERDICT_UNCHANGED and again.results[0].record_id == item.record_id
        conflict = stub.SubmitVerdicts(
            apb.SubmitVerdictsRequest(
                operator_id="carol", verdicts=[apb.Verdict(record_id=item.record_id, label="ham")]
            )
        )
        assert conflict.results[0].outcome == apb.VERDICT_CONFLICT
        missing = stub.SubmitVerdicts(
            apb.SubmitVerdictsRequest(
                operator_id="carol", verdicts=[apb.Verdict(record_id="no-such-record", label="ham")]
            )
        )
        assert missing.results[0].outcome == apb.VERDICT_NOT_FOUND
        # Bob releases his items; Carol gets them.
        released = stub.ReleaseReview(
            apb.ReleaseReviewRequest(reviewer_id="bob", record_ids=[i.record_id for i in everything.items])
        )
        assert released.released == 2
        assert len(stub.NextForReview(apb.NextForReviewRequest(reviewer_id="carol", limit=5)).items) == 2

    # Export for training, both formats, and check the rows.
    jsonl, csv_path = tmp_path / "export" / "verdicts.jsonl", tmp_path / "export" / "verdicts.csv"
    assert (
        cli.main(["export-verdicts", "--format", "jsonl", "--output", str(jsonl), "--audit-url", audited.audit_url])
        == 0
    )
    assert (
        cli.main(["export-verdicts", "--format", "csv", "--output", str(csv_path), "--audit-url", audited.audit_url])
        == 0
    )
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    with open(csv_path, newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert rows == csv_rows
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    (row,) = rows
    assert (
        row["post_id"],
        row["image_id"],
        row["image"],
        row["label"],
        row["label_level"],
        row["operator"],
        row["time"],
    ) == ("post-42", "cat", image_host.url("/green.png"), "sexual", "image", "alice", "2025-10-09T08:53:20.000Z")
    assert row["content_sha256"] == by_id["cat"].content_sha256 and row["note"] == "cropped"

    dataset = read_verdict_export(jsonl)
    assert "cat" in repr(dataset) and "sexual" in repr(dataset), dataset


@pytest.mark.parametrize(
    ("verdicts", "operator", "message"),
    [
        ([], "op", "no verdicts"),
        ([apb.Verdict(label="ham")], "op", "name the record by record_id, or by request_id and image_id"),
        ([apb.Verdict(request_id="r", label="ham")], "op", "name the record"),
        ([apb.Verdict(record_id="x", request_id="r", image_id="i", label="ham")], "op", "both given"),
        ([apb.Verdict(record_id="x")], "op", "label is empty"),
        ([apb.Verdict(record_id="x", label="ham")], "", "operator id is required"),
        ([apb.Verdict(record_id="x", label="ham", operator_id="o" * 300)], "", "operator is 300 characters"),
        (
            [apb.Verdict(record_id="x", label="ham"), apb.Verdict(record_id="x", label="sexual")],
            "op",
            "given both 'ham' and 'sexual'",
        ),
        ([apb.Verdict(record_id="x", label="ham")] * 1001, "op", "1001 verdicts, limit 1000"),
    ],
)
def test_malformed_verdicts_are_invalid_argument(audited, verdicts, operator, message):
    with audited.channel() as channel, pytest.raises(grpc.RpcError) as info:
        audit_stub(channel).SubmitVerdicts(apb.SubmitVerdictsRequest(operator_id=operator, verdicts=verdicts))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_a_label_outside_the_models_classes_writes_nothing(audited, image_host):
    classify_post(audited, image_host)
    with audited.channel() as channel:
        stub = audit_stub(channel)
        items = stub.NextForReview(apb.NextForReviewRequest(reviewer_id="r")).items
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitVerdicts(
                apb.SubmitVerdictsRequest(
                    operator_id="op",
                    verdicts=[
                        apb.Verdict(record_id=items[0].record_id, label="ham"),
                        apb.Verdict(record_id=items[1].record_id, label="violence"),
                    ],
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "label 'violence' is not a class of model moderation version 1" in info.value.details()
        # Nothing was written: the first item is still waiting for a verdict.
        assert len(stub.NextForReview(apb.NextForReviewRequest(reviewer_id="r")).items) == len(items)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (apb.NextForReviewRequest(), "reviewer id is required"),
        (apb.NextForReviewRequest(reviewer_id="r", limit=1000), "limit 1000 is over"),
        (apb.NextForReviewRequest(reviewer_id="r", lease_seconds=100_000), "lease of 100000s is over"),
        (apb.NextForReviewRequest(reviewer_id="r", filter=apb.ReviewFilter(reasons=[0])), "AUDIT_REASON_UNSPECIFIED"),
        (apb.NextForReviewRequest(reviewer_id="r", filter=apb.ReviewFilter(decisions=[0])), "DECISION_UNSPECIFIED"),
    ],
)
def test_malformed_review_requests_are_invalid_argument(audited, request_, message):
    with audited.channel() as channel, pytest.raises(grpc.RpcError) as info:
        audit_stub(channel).NextForReview(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_reflection_lists_the_audit_service_and_calls_are_counted(audited):
    with audited.channel() as channel:
        assert "moderation.v1.Audit" in set(ProtoReflectionDescriptorDatabase(channel).get_services())
        audit_stub(channel).NextForReview(apb.NextForReviewRequest(reviewer_id="r"))
    assert (
        audited.service.metrics.registry.get_sample_value(
            "moderation_calls_total", {"method": "/moderation.v1.Audit/NextForReview", "code": "OK"}
        )
        == 1
    )


def test_cli_imports_jsonl_and_csv_verdicts(audited, image_host, tmp_path, capsys):
    classify_post(audited, image_host)
    store = audited.service.audit_components.store
    records = {r.image_id: r for r in store.next_for_review("cli", 10, 1)}
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "record_id": records["cat"].record_id,
                "label": "ham",
                "operator": "op1",
                "time": "2026-01-02T03:04:05Z",
                "note": "fine",
            }
        )
        + "\n\n"
        + json.dumps({"request_id": "req-42", "image_id": "nude", "label": "sexual"})
        + "\n"
        + json.dumps({"record_id": "ghost", "label": "ham", "operator": "op1"})
        + "\n"
    )
    code = cli.main(["import-verdicts", str(jsonl), "--operator", "default-op", "--audit-url", audited.audit_url])
    out = capsys.readouterr()
    assert code == 1  # the ghost record
    assert "3 verdicts: 2 applied, 0 unchanged, 1 not_found, 0 conflict" in out.out
    assert "ghost: not_found" in out.err
    judged = {r.image_id: r for r in store.judged()}
    assert (judged["cat"].verdict_label, judged["cat"].verdict_operator, judged["cat"].verdict_at) == (
        "ham",
        "op1",
        1767323045.0,
    )
    assert (judged["nude"].verdict_label, judged["nude"].verdict_operator) == ("sexual", "default-op")

    table = tmp_path / "v.csv"
    table.write_text(
        "request_id,image_id,label,operator,time\nreq-42,fog,personal_info,op2,1767323045.5\nreq-42,nude,sexual,op2,\n"
    )
    assert cli.main(["import-verdicts", str(table), "--audit-url", audited.audit_url]) == 0
    assert "2 verdicts: 1 applied, 1 unchanged" in capsys.readouterr().out
    assert {r.image_id: r.verdict_label for r in store.judged()}["fog"] == "personal_info"

    # An export imports back unchanged (the round trip a re-labelling tool would use).
    export = tmp_path / "all.csv"
    assert (
        cli.main(["export-verdicts", "--format", "csv", "--output", str(export), "--audit-url", audited.audit_url]) == 0
    )
    assert cli.main(["import-verdicts", str(export), "--audit-url", audited.audit_url]) == 0
    assert "3 verdicts: 0 applied, 3 unchanged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"record_id": "x", "label": "ham"}\n', ".jsonl", "operator id is required"),
        ('{"record_id": "x", "label": "ham", "operator": "o", "time": "yesterday"}\n', ".jsonl", "neither ISO 8601"),
        (
            '{"record_id": "x", "label": "ham", "operator": "o", "time": "2026-01-01T00:00:00"}\n',
            ".jsonl",
            "no time zone",
        ),
        ("not json\n", ".jsonl", "not JSON"),
        ("[1, 2]\n", ".jsonl", "a JSON object per line"),
        ("record_id,operator\nx,o\n", ".csv", "CSV header lacks ['label']"),
    ],
)
def test_cli_refuses_malformed_files(audited, tmp_path, capsys, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    assert cli.main(["import-verdicts", str(path), "--audit-url", audited.audit_url]) == 2
    assert message in capsys.readouterr().err


def test_cli_reports_an_unreachable_database(tmp_path, capsys):
    path = tmp_path / "v.jsonl"
    path.write_text('{"record_id": "x", "label": "ham", "operator": "o"}\n')
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    assert cli.main(["import-verdicts", str(path), "--audit-url", "postgresql://postgres@127.0.0.1:9/test"]) == 3
    assert "audit database" in capsys.readouterr().err


def test_audit_items_carry_the_reading(audited):
    """A record's reading (model.reader.types.reading_record()'s JSON, as the pipeline stores it)
    comes back as moderation.v1.Reading, the message Classify answers with."""
    reading = reading_record(
        ReadingResult(
            status=ReadingStatus.BUDGET_EXCEEDED,
            gate_score=0.42,
            findings=(
                Finding(
                    EntityType.PHONE,
                    0.93,
                    (0.25, 0.4, 0.75, 0.52),
                    "090-****-**78",
                    0,
                    ("phonenumbers:JP", "cue:phone"),
                ),
            ),
            cue_categories=("phone",),
            lines=12,
            cnn_personal_info=0.41,
            fused=True,
        )
    )
    common = {
        "request_id": "req-r",
        "post_id": "post-r",
        "url": "",
        "content_sha256": "0" * 64,
        "scores": {"ham": 0.1, "sexual": 0.02, "personal_info": 0.88},
        "top_class": "personal_info",
        "decision": "REVIEW",
        "reason": AuditReason.FLAGGED,
        "model_name": "moderation",
        "model_version": "1",
    }
    audited.service.audit_components.store.write(
        [
            AuditRecord(image_id="with", created_at=1.0, record_id="rec-with", reading=reading, **common),
            AuditRecord(image_id="without", created_at=2.0, record_id="rec-without", **common),
        ]
    )
    with audited.channel() as channel:
        stub = audit_stub(channel)
        items = stub.NextForReview(apb.NextForReviewRequest(reviewer_id="alice")).items
        posted = stub.GetPost(apb.GetPostRequest(post_id="post-r")).items
    for got in (items, posted):
        with_reading, without = got
        assert (with_reading.record_id, without.record_id) == ("rec-with", "rec-without")
        assert not without.HasField("reading")
        r = with_reading.reading
        assert r.status == pb.READING_BUDGET_EXCEEDED and r.lines == 12 and list(r.cues) == ["phone"]
        assert r.gate_score == pytest.approx(0.42) and r.cnn_personal_info == pytest.approx(0.41) and r.fused
        (finding,) = r.findings
        assert finding.entity == pb.ENTITY_PHONE and finding.masked == "090-****-**78"
        assert finding.confidence == pytest.approx(0.93)
        assert [finding.box.x0, finding.box.y0, finding.box.x1, finding.box.y1] == pytest.approx(
            [0.25, 0.4, 0.75, 0.52]
        )
        assert list(finding.evidence) == ["phonenumbers:JP", "cue:phone"]
