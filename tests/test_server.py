"""The real gRPC server on loopback with the fake colour model (a real ONNX file through the
real engine), a real HTTP image host and a real SQLite audit file."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from loadtest.fake_model import THRESHOLDS, expected_scores, publish_fake_version
from moderation_api.v1 import moderation_pb2 as pb
from tests.conftest import encode, png_header_only
from tests.harness import ServerThread, make_config

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 200, 0), (0, 0, 255), (128, 128, 128)
# Mean colour that puts the fake model's `sexual` score between the review and block thresholds.
REVIEW_RED = (160, 150, 0)


@pytest.fixture
def server(model_repo, tmp_path, image_host):
    config = make_config(model_repo, tmp_path / "audit.sqlite3", allow=(image_host.allow_entry,))
    running = ServerThread(config).start()
    yield running
    running.stop()


def classify(server: ServerThread, request: pb.ClassifyRequest, timeout: float = 20.0) -> pb.ClassifyResponse:
    with server.channel() as channel:
        return server.stub(channel).Classify(request, timeout=timeout)


def status_name(result) -> str:
    return pb.ImageStatusCode.Name(result.status.code)


def decision_name(value: int) -> str:
    return pb.Decision.Name(value).removeprefix("DECISION_")


def test_post_of_several_images_keeps_order_ids_and_follows_thresholds(server, image_host):
    image_host.add("/green.jpg", encode(GREEN))
    image_host.add("/blue.png", encode(BLUE, fmt="PNG"), content_type="image/png")
    request = pb.ClassifyRequest(
        post_id="post-1",
        images=[
            pb.ImageInput(id="z-first", url=image_host.url("/green.jpg")),
            pb.ImageInput(id="a-second", content=encode(RED, fmt="PNG")),
            pb.ImageInput(id="m-third", url=image_host.url("/blue.png")),
            pb.ImageInput(id="b-fourth", content=encode(REVIEW_RED, fmt="PNG")),
            pb.ImageInput(id="c-fifth", content=encode(GREY, fmt="WEBP")),
        ],
    )
    response = classify(server, request)
    assert [r.id for r in response.results] == ["z-first", "a-second", "m-third", "b-fourth", "c-fifth"]
    assert response.model_name == "moderation" and response.model_version == "1"
    for result in response.results:
        assert status_name(result) == "IMAGE_OK", result.status.message
        assert set(result.scores) == {"ham", "sexual", "personal_info"}
        assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert result.scores[result.top_class] == max(result.scores.values())
        assert len(result.content_sha256) == 64
        expected = "PASS"
        for cls, t in THRESHOLDS.items():
            if result.scores[cls] >= t["block"]:
                expected = "BLOCK"
                break
            if result.scores[cls] >= t["review"]:
                expected = "REVIEW"
        assert decision_name(result.decision) == expected
    by_id = {r.id: r for r in response.results}
    assert by_id["z-first"].top_class == "ham" and decision_name(by_id["z-first"].decision) == "PASS"
    assert by_id["a-second"].top_class == "sexual" and decision_name(by_id["a-second"].decision) == "BLOCK"
    assert by_id["m-third"].top_class == "personal_info" and decision_name(by_id["m-third"].decision) == "BLOCK"
    assert decision_name(by_id["b-fourth"].decision) == "REVIEW"
    # PNG is lossless: the served score is the fake model's exact score for that colour.
    assert by_id["b-fourth"].scores["sexual"] == pytest.approx(expected_scores(REVIEW_RED)["sexual"], abs=1e-4)
    assert decision_name(response.post_decision) == "BLOCK"
    assert response.request_id


def test_every_failure_is_per_image_and_the_others_still_get_scores(server, image_host):
    good = encode(GREEN)
    truncated = encode(GREEN, size=(400, 300))[:700]
    image_host.add("/good.jpg", good)
    image_host.add("/truncated.jpg", truncated)
    image_host.add("/pixel-bomb.png", png_header_only(30000, 30000), content_type="image/png")
    image_host.add(
        "/vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', content_type="image/svg+xml"
    )
    image_host.add_html_as_jpeg("/page.jpg")
    image_host.add_slow("/slow.jpg", good, header_delay_s=5.0)
    image_host.add_huge("/huge.jpg", 11 * 1024 * 1024)
    image_host.add_gzip_bomb("/bomb.jpg")
    cases = {
        "missing": (image_host.url("/nope.jpg"), "IMAGE_HTTP_ERROR"),
        "slow": (image_host.url("/slow.jpg"), "IMAGE_FETCH_TIMEOUT"),
        "huge": (image_host.url("/huge.jpg"), "IMAGE_TOO_LARGE"),
        "bomb": (image_host.url("/bomb.jpg"), "IMAGE_TOO_LARGE"),
        "html": (image_host.url("/page.jpg"), "IMAGE_UNSUPPORTED_FORMAT"),
        "truncated": (image_host.url("/truncated.jpg"), "IMAGE_CORRUPT"),
        "pixel-bomb": (image_host.url("/pixel-bomb.png"), "IMAGE_TOO_MANY_PIXELS"),
        "svg": (image_host.url("/vector.svg"), "IMAGE_UNSUPPORTED_FORMAT"),
    }
    images = [pb.ImageInput(id="good-before", url=image_host.url("/good.jpg"))]
    images += [pb.ImageInput(id=name, url=url) for name, (url, _) in cases.items()]
    images += [pb.ImageInput(id="good-inline", content=good)]
    started = time.monotonic()
    response = classify(server, pb.ClassifyRequest(post_id="p", images=images))
    assert time.monotonic() - started < 10  # the slow origin costs its time limit (2 s here), not more
    by_id = {r.id: r for r in response.results}
    for name, (_, code) in cases.items():
        result = by_id[name]
        assert status_name(result) == code, (name, result.status.message)
        assert result.status.message
        assert not result.scores
        assert decision_name(result.decision) == "REVIEW"  # the configured decision for unclassifiable images
    assert by_id["missing"].status.http_status == 404
    assert "30000x30000" in by_id["pixel-bomb"].status.message
    for name in ("good-before", "good-inline"):
        assert status_name(by_id[name]) == "IMAGE_OK"
        assert by_id[name].top_class == "ham"
        assert sum(by_id[name].scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert decision_name(response.post_decision) == "REVIEW"


@pytest.mark.parametrize("host", ["localhost", "[::1]", "2130706433", "0x7f.1", "127.0.0.1"])
def test_ssrf_destinations_are_refused_without_a_connection(server, image_host, trap, host):
    image_host.add_redirect("/hop.jpg", trap.url("127.0.0.1", "/x.jpg"))
    image_host.add("/ok.jpg", encode(GREEN))
    request = pb.ClassifyRequest(
        post_id="p",
        images=[
            pb.ImageInput(id="direct", url=f"http://{host}:{trap.port}/x.jpg"),
            pb.ImageInput(id="redirected", url=image_host.url("/hop.jpg")),
            pb.ImageInput(id="ok", url=image_host.url("/ok.jpg")),
        ],
    )
    response = classify(server, request)
    codes = {r.id: status_name(r) for r in response.results}
    assert codes == {
        "direct": "IMAGE_DESTINATION_NOT_ALLOWED",
        "redirected": "IMAGE_DESTINATION_NOT_ALLOWED",
        "ok": "IMAGE_OK",
    }
    assert trap.accepted() == []


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([], "no images"),
        ([pb.ImageInput(id=str(i), content=b"x") for i in range(17)], "17 images, limit 16"),
        ([pb.ImageInput(id="a", url="file:///etc/passwd")], "scheme 'file' is not allowed"),
        ([pb.ImageInput(id="a", url="gopher://127.0.0.1:70/")], "scheme 'gopher' is not allowed"),
        ([pb.ImageInput(id="a", url="http://h.test/" + "x" * 5000)], "url is 5014 characters"),
        ([pb.ImageInput(id="a")], "neither url nor content"),
    ],
)
def test_malformed_requests_are_invalid_argument(server, images, message):
    with pytest.raises(grpc.RpcError) as info:
        classify(server, pb.ClassifyRequest(post_id="p", images=images))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_audit_rows_for_flagged_and_sampled_images(model_repo, tmp_path, image_host):
    audit_path = tmp_path / "audit.sqlite3"
    config = make_config(model_repo, audit_path, allow=(image_host.allow_entry,), audit={"sample_rate": 1.0})
    running = ServerThread(config).start()
    try:
        image_host.add("/red.jpg", encode(RED))
        response = classify(
            running,
            pb.ClassifyRequest(
                post_id="post-9",
                request_id="req-9",
                images=[
                    pb.ImageInput(id="red", url=image_host.url("/red.jpg")),
                    pb.ImageInput(id="green", content=encode(GREEN)),
                    pb.ImageInput(id="broken", content=b"not an image"),
                ],
            ),
        )
    finally:
        running.stop()  # flushes the audit queue
    by_id = {r.id: r for r in response.results}
    assert by_id["green"].audit_sampled and not by_id["red"].audit_sampled
    rows = (
        sqlite3.connect(audit_path)
        .execute(
            "SELECT image_id, post_id, request_id, url, content_sha256, decision, reason, model_version, scores "
            "FROM audit_records ORDER BY image_id"
        )
        .fetchall()
    )
    assert [(r[0], r[5], r[6]) for r in rows] == [("green", "PASS", "sampled"), ("red", "BLOCK", "flagged")]
    red = rows[1]
    assert red[1:4] == ("post-9", "req-9", image_host.url("/red.jpg"))
    assert red[4] == by_id["red"].content_sha256 and red[7] == "1"
    assert '"sexual"' in red[8]


def test_health_serving_only_after_load_and_not_serving_during_drain(tmp_path, image_host):
    repo = tmp_path / "models"
    repo.mkdir()
    config = make_config(
        repo, tmp_path / "audit.sqlite3", allow=(image_host.allow_entry,), server={"drain_delay_s": 1.0}
    )
    running = ServerThread(config).start()
    try:
        with running.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="moderation.v1.Moderation")
            assert health.Check(check).status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as info:
                running.stub(channel).Classify(
                    pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="a", content=encode(GREEN))]), timeout=5
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            publish_fake_version(repo)
            deadline = time.monotonic() + 10
            while health.Check(check).status != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "never became SERVING after the model was published"
                time.sleep(0.05)

            # A call in flight when SIGTERM arrives finishes; health says NOT_SERVING meanwhile.
            image_host.add_slow("/slow.jpg", encode(GREEN), header_delay_s=1.5)
            result: dict = {}
            caller = threading.Thread(
                target=lambda: result.setdefault(
                    "r",
                    running.stub(channel).Classify(
                        pb.ClassifyRequest(
                            post_id="p", images=[pb.ImageInput(id="s", url=image_host.url("/slow.jpg"))]
                        ),
                        timeout=10,
                    ),
                )
            )
            caller.start()
            time.sleep(0.3)
            stopping = running.stop_async()
            time.sleep(0.3)
            assert health.Check(check).status == health_pb2.HealthCheckResponse.NOT_SERVING
            caller.join(10)
            stopping.result(20)
            assert status_name(result["r"].results[0]) == "IMAGE_OK"
    finally:
        running.stop()


def test_reflection_lists_the_services(server):
    with server.channel() as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"moderation.v1.Moderation", "grpc.health.v1.Health"} <= services


def test_too_many_concurrent_calls_is_resource_exhausted(model_repo, tmp_path, image_host):
    config = make_config(
        model_repo, tmp_path / "audit.sqlite3", allow=(image_host.allow_entry,), server={"max_concurrent_calls": 1}
    )
    running = ServerThread(config).start()
    try:
        image_host.add_slow("/slow.jpg", encode(GREEN), header_delay_s=1.0)
        slow = pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="s", url=image_host.url("/slow.jpg"))])
        with running.channel() as channel:
            stub = running.stub(channel)
            first = stub.Classify.future(slow, timeout=10)
            time.sleep(0.3)
            with pytest.raises(grpc.RpcError) as info:
                stub.Classify(pb.ClassifyRequest(post_id="q", images=[pb.ImageInput(id="a", content=encode(RED))]))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert status_name(first.result().results[0]) == "IMAGE_OK"
    finally:
        running.stop()


def test_new_version_is_rolled_out_and_a_broken_one_is_not(server, model_repo):
    request = pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="a", content=encode(GREEN))])
    assert classify(server, request).model_version == "1"
    publish_fake_version(model_repo)
    deadline = time.monotonic() + 10
    while classify(server, request).model_version != "2":
        assert time.monotonic() < deadline, "version 2 was never picked up"
        time.sleep(0.1)
    broken = model_repo / "moderation" / "3"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    time.sleep(1.0)  # several poll intervals
    assert classify(server, request).model_version == "2"
    text = server.service.metrics.registry.get_sample_value("moderation_model_loads_total", {"result": "failed"})
    assert text and text >= 1


def test_metrics_endpoint(model_repo, tmp_path):
    config = make_config(model_repo, tmp_path / "audit.sqlite3", server={"metrics_port": 0})
    running = ServerThread(config).start()
    try:
        classify(running, pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="a", content=encode(RED))]))
        body = urllib.request.urlopen(f"http://127.0.0.1:{running.service.metrics_port}/metrics").read().decode()
    finally:
        running.stop()
    for series in (
        'moderation_calls_total{code="OK",method="/moderation.v1.Moderation/Classify"} 1.0',
        'moderation_images_total{decision="BLOCK",outcome="ok"}',
        "moderation_call_seconds_bucket",
        'moderation_stage_seconds_bucket{le="0.001",stage="decode"}',
        'moderation_model_info{engine="onnx",name="moderation",version="1"} 1.0',
        "moderation_batch_size_bucket",
        "moderation_inline_bytes_total",
    ):
        assert series in body, series


def test_grpcurl_lists_services_and_calls_classify_through_reflection(server):
    grpcurl = str(Path(sys.executable).parent / "grpcurl")
    listed = subprocess.run([grpcurl, "-plaintext", server.target, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert {"moderation.v1.Moderation", "grpc.health.v1.Health", "tensorflow.serving.PredictionService"} <= set(
        listed.stdout.split()
    )
    content = base64.b64encode(encode(RED, fmt="PNG")).decode()
    called = subprocess.run(
        [
            grpcurl,
            "-plaintext",
            "-d",
            json.dumps({"postId": "p", "images": [{"id": "a", "content": content}]}),
            server.target,
            "moderation.v1.Moderation/Classify",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert called.returncode == 0, called.stderr
    answer = json.loads(called.stdout)
    # grpcurl 1.8 prints the proto field names.
    assert answer["results"][0]["top_class"] == "sexual" and answer["post_decision"] == "DECISION_BLOCK"


def test_start_up_serves_the_newest_version_that_loads(model_repo, tmp_path):
    broken = model_repo / "moderation" / "2"
    broken.mkdir()
    (broken / "metadata.json").write_text('{"name": "moderation"}')
    running = ServerThread(make_config(model_repo, tmp_path / "audit.sqlite3")).start()
    try:
        response = classify(
            running, pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="a", content=encode(RED))])
        )
        failed = running.service.metrics.registry.get_sample_value("moderation_model_loads_total", {"result": "failed"})
    finally:
        running.stop()
    assert response.model_version == "1"
    assert failed == 1
