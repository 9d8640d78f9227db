"""The load generator's own tests, against a tiny grpc.aio Moderation server on loopback that
answers with made-up results (the service itself is not under test here), and against the
loadtest image host."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import math
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from PIL import Image

from loadtest.generator import (
    RequestRecord,
    find_saturation,
    latency_summary,
    percentile,
    phased_rate,
    prepared,
    run_load,
    summarize,
)
from loadtest.image_host import ImageHost
from loadtest.images import ensure_images
from loadtest.scenarios import RequestBuilder, ScenarioOptions, check_loopback_target, image_picks, run_scenario
from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_image_status(content: bytes) -> int:
    """A caricature of the service's decoder, enough to tell the generated bad payloads apart."""
    if content.startswith(b"bad"):
        return pb.IMAGE_CORRUPT
    if content.startswith(PNG_SIGNATURE):
        width, height = struct.unpack(">II", content[16:24])
        return pb.IMAGE_TOO_MANY_PIXELS if width * height > 40_000_000 else pb.IMAGE_OK
    return pb.IMAGE_OK if content.startswith(b"\xff\xd8\xff") else pb.IMAGE_UNSUPPORTED_FORMAT


class FakeModeration(pb_grpc.ModerationServicer):
    """Answers with made-up scores and fake_image_status() per image; every fail_every-th call
    fails with RESOURCE_EXHAUSTED. Records what the generator did to it."""

    def __init__(self, delay_s: float = 0.0, fail_every: int = 0) -> None:
        self.delay_s = delay_s
        self.fail_every = fail_every
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.peers: set[str] = set()

    async def Classify(self, request: pb.ClassifyRequest, context: aio.ServicerContext) -> pb.ClassifyResponse:
        self.calls += 1
        number = self.calls
        self.peers.add(context.peer())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.fail_every and number % self.fail_every == 0:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too busy")
            results = []
            for image in request.images:
                status = fake_image_status(image.content)
                bad = status != pb.IMAGE_OK
                results.append(
                    pb.ImageResult(
                        id=image.id,
                        status=pb.ImageStatus(code=status),
                        scores={} if bad else {"ham": 0.9, "sexual": 0.05, "personal_info": 0.05},
                        top_class="" if bad else "ham",
                        decision=pb.DECISION_REVIEW if bad else pb.DECISION_PASS,
                    )
                )
            return pb.ClassifyResponse(
                results=results,
                post_decision=pb.DECISION_PASS,
                model_name="fake",
                model_version="1",
                request_id=f"r{number}",
            )
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def fake_server(servicer: FakeModeration) -> AsyncIterator[str]:
    # The real service takes 64 MB messages; at gRPC's default 4 MB, a request with two large
    # photos would fail with RESOURCE_EXHAUSTED before reaching the servicer.
    server = aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    pb_grpc.add_ModerationServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def simple_factory(images: int = 1, bad_every: int = 0):
    def factory(seq: int) -> pb.ClassifyRequest:
        request = pb.ClassifyRequest(post_id=f"p{seq}")
        for j in range(images):
            content = b"bad" if bad_every and j % bad_every == bad_every - 1 else b"\xff\xd8\xff fake jpeg"
            request.images.add(id=str(j), content=content)
        return request

    return factory


def run(coro):
    return asyncio.run(coro)


# --- statistics -------------------------------------------------------------------------------


def test_percentiles_on_a_known_list():
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 50) == 0.050
    assert percentile(values, 95) == 0.095
    assert percentile(values, 99) == 0.099
    assert percentile(values, 100) == 0.100
    assert math.isnan(percentile([], 50))
    summary = latency_summary(list(reversed(values)))  # order must not matter
    assert summary["p50"] == pytest.approx(50.0)
    assert summary["p95"] == pytest.approx(95.0)
    assert summary["p99"] == pytest.approx(99.0)
    assert summary["max"] == pytest.approx(100.0)
    assert summary["mean"] == pytest.approx(50.5)
    # Nearest rank over ten values: p95 and p99 are both the largest, never an interpolation.
    ten = [0.01 * i for i in range(1, 11)]
    assert latency_summary(ten)["p99"] == pytest.approx(100.0)
    assert latency_summary(ten)["p50"] == pytest.approx(50.0)


def test_summarize_excludes_warmup_and_counts_codes():
    records = [
        RequestRecord(
            i,
            0,
            start_s=i * 0.1,
            latency_s=0.01 * (i + 1),
            code="OK",
            images=2,
            image_statuses=("IMAGE_OK", "IMAGE_CORRUPT"),
        )
        for i in range(20)
    ]
    records[15].code, records[15].image_statuses = "RESOURCE_EXHAUSTED", ()
    report = summarize(records, warmup_s=0.5, duration_s=1.5, send_stop_s=2.0, elapsed_s=2.2)
    assert report.warmup_requests == 5
    assert report.requests == 15
    assert report.ok == 14
    assert report.errors == {"RESOURCE_EXHAUSTED": 1}
    assert report.image_statuses == {"IMAGE_OK": 14, "IMAGE_CORRUPT": 14}
    ok_latencies = sorted(0.01 * (i + 1) for i in range(5, 20) if i != 15)
    assert report.latency_ms["p50"] == pytest.approx(percentile(ok_latencies, 50) * 1000)
    assert report.latency_ms["max"] == pytest.approx(200.0)
    assert report.window_s == pytest.approx(1.5)
    json.dumps(report.to_dict(include_records=True))  # NaN-free and serialisable


# --- closed loop ------------------------------------------------------------------------------


def test_closed_loop_never_exceeds_concurrency_and_honours_max_requests():
    async def body():
        servicer = FakeModeration(delay_s=0.005)
        async with fake_server(servicer) as target:
            report = await run_load(
                target, requests_factory=simple_factory(), concurrency=4, duration_s=30, max_requests=120
            )
        return servicer, report

    servicer, report = run(body())
    assert servicer.calls == 120
    assert len(report.records) == 120
    assert report.max_outstanding <= 4
    assert servicer.max_in_flight <= 4
    assert servicer.max_in_flight >= 2  # it did run concurrently
    assert report.ok == 120 and report.errors == {}
    assert report.elapsed_s < 10


def test_duration_bound_and_warmup_exclusion():
    async def body():
        servicer = FakeModeration(delay_s=0.01)
        async with fake_server(servicer) as target:
            return await run_load(
                target, requests_factory=simple_factory(), concurrency=2, duration_s=0.6, warmup_s=0.3
            )

    report = run(body())
    assert max(r.start_s for r in report.records) <= 0.9 + 0.005
    assert 0.9 <= report.elapsed_s < 0.9 + 0.5
    assert report.warmup_requests > 0
    assert report.requests == sum(1 for r in report.records if r.start_s >= 0.3)
    assert report.window_s == pytest.approx(0.6, abs=0.01)
    # ~2 calls per 10 ms over 0.6 s; generous, a loaded CI box is slow.
    assert 20 < report.throughput_rps < 250


def test_errors_by_code_and_image_statuses_are_counted():
    async def body():
        servicer = FakeModeration(fail_every=4)
        async with fake_server(servicer) as target:
            return await run_load(
                target,
                requests_factory=simple_factory(images=2, bad_every=2),
                concurrency=4,
                duration_s=30,
                max_requests=100,
            )

    report = run(body())
    assert report.requests == 100
    assert report.errors == {"RESOURCE_EXHAUSTED": 25}
    assert report.ok == 75
    assert report.image_statuses == {"IMAGE_OK": 75, "IMAGE_CORRUPT": 75}
    assert report.images == 200
    assert all(r.image_statuses == () for r in report.records if r.code != "OK")


def test_prepared_requests_arrive_as_built_and_are_counted_like_messages():
    class Recording(FakeModeration):
        def __init__(self) -> None:
            super().__init__()
            self.post_ids: list[str] = []

        async def Classify(self, request, context):
            self.post_ids.append(request.post_id)
            return await super().Classify(request, context)

    async def body():
        servicer = Recording()
        async with fake_server(servicer) as target:
            report = await run_load(
                target,
                requests_factory=prepared(simple_factory(images=2, bad_every=2), 5),
                concurrency=3,
                duration_s=30,
                max_requests=20,
            )
        return servicer, report

    servicer, report = run(body())
    assert report.requests == report.ok == 20
    assert report.images == 40  # from Serialized.images: the generator never parsed the bytes
    assert report.image_statuses == {"IMAGE_OK": 20, "IMAGE_CORRUPT": 20}
    assert sorted(servicer.post_ids) == sorted(f"p{seq % 5}" for seq in range(20))


def test_channels_are_distinct_tcp_connections():
    async def body(channels: int) -> set[str]:
        servicer = FakeModeration(delay_s=0.002)
        async with fake_server(servicer) as target:
            await run_load(
                target,
                requests_factory=simple_factory(),
                concurrency=16,
                channels=channels,
                duration_s=30,
                max_requests=64,
            )
        return servicer.peers

    peers = run(body(8))
    assert len(peers) == 8, peers
    assert all(p.startswith("ipv4:127.0.0.1:") for p in peers)
    assert len(run(body(1))) == 1


# --- open loop --------------------------------------------------------------------------------


@pytest.mark.parametrize("arrivals", ["uniform", "poisson"])
def test_open_loop_rate_is_close_to_target(arrivals):
    async def body():
        servicer = FakeModeration(delay_s=0.001)
        async with fake_server(servicer) as target:
            return await run_load(
                target, requests_factory=simple_factory(), rate=200, arrivals=arrivals, duration_s=1.5, warmup_s=0.0
            )

    report = run(body())
    expected = 200 * 1.5
    bound = 0.1 if arrivals == "uniform" else 0.25  # Poisson counts vary by ~sqrt(300) = 17
    assert abs(len(report.records) - expected) <= expected * bound, len(report.records)
    assert report.send_rate_rps == pytest.approx(200, rel=bound)
    assert report.mode == "open" and report.rate == pytest.approx(200)
    assert report.skipped == 0
    assert report.schedule_lag_ms["p50"] < 20


@pytest.mark.parametrize("rate", [400, 5000])
def test_open_loop_cannot_run_away(rate):
    # At 5000/s arrivals fall due faster than the event loop wakes up, so they are launched in
    # catch-up bursts: the cap must hold within a burst too.
    async def body():
        servicer = FakeModeration(delay_s=0.6)
        async with fake_server(servicer) as target:
            return servicer, await run_load(
                target,
                requests_factory=simple_factory(),
                rate=rate,
                arrivals="uniform",
                duration_s=0.4,
                max_outstanding=10,
            )

    servicer, report = run(body())
    assert report.max_outstanding == 10
    assert servicer.max_in_flight <= 10
    assert len(report.records) == 10  # nothing completed while sending, so the cap held it at 10
    assert report.skipped >= rate * 0.4 * 0.75 - 10


def test_open_loop_follows_a_phased_rate():
    rate = phased_rate([(0.5, 40), (0.5, 400)])
    assert rate(0.1) == 40 and rate(0.7) == 400 and rate(1.2) == 40

    async def body():
        async with fake_server(FakeModeration()) as target:
            return await run_load(
                target, requests_factory=simple_factory(), rate=rate, arrivals="uniform", duration_s=1.0
            )

    report = run(body())
    low = sum(1 for r in report.records if r.start_s < 0.5)
    high = sum(1 for r in report.records if r.start_s >= 0.5)
    assert 15 <= low <= 25 and 160 <= high <= 220, (low, high)
    assert report.rate == pytest.approx(220, rel=0.05)


# --- saturation and reports -------------------------------------------------------------------


def test_find_saturation_steps_and_plot(tmp_path):
    async def body():
        async with fake_server(FakeModeration(delay_s=0.01)) as target:
            return await find_saturation(
                target, requests_factory=simple_factory(), levels=(1, 2, 4), step_duration_s=0.4, warmup_s=0.1
            )

    result = run(body())
    assert [s.concurrency for s in result.steps] == [1, 2, 4]
    assert result.best is max(result.steps, key=lambda s: s.ok_rps)
    # 10 ms per call: one worker manages <= 100/s; four should do well over twice that.
    assert result.steps[0].ok_rps <= 110
    assert result.steps[2].ok_rps > 2 * result.steps[0].ok_rps
    assert all(s.latency_ms["p50"] >= 10 for s in result.steps)
    assert result.knee.ok_rps >= 0.95 * result.best.ok_rps
    path = result.write_plot(tmp_path / "saturation.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads(result.write_json(tmp_path / "saturation.json").read_text())["best"]["concurrency"] in (2, 4)


def test_report_json_and_png(tmp_path):
    async def body():
        async with fake_server(FakeModeration(delay_s=0.003, fail_every=10)) as target:
            return await run_load(
                target, requests_factory=simple_factory(), concurrency=4, duration_s=1.2, warmup_s=0.2
            )

    report = run(body())
    png = report.write_plot(tmp_path / "out" / "run.png")
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 400
    saved = json.loads(report.write_json(tmp_path / "out" / "run.json").read_text())
    assert saved["requests"] == report.requests
    assert saved["errors"]["RESOURCE_EXHAUSTED"] > 0
    assert {"p50", "p95", "p99", "max"} <= set(saved["latency_ms"])
    assert saved["timeline"] and "records" not in saved
    assert "throughput" in report.table()


# --- images, image host, scenarios -----------------------------------------------------------


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    return ensure_images(tmp_path_factory.mktemp("images"), photos=3, large=1, screenshots=2)


def test_generated_images_are_realistic_and_cached(small_images, tmp_path):
    for f in small_images.of_kind("photo"):
        with Image.open(small_images.root / f.name) as image:
            assert (image.format, image.size) == ("JPEG", (1024, 768))
        assert 60_000 < f.size < 450_000, f
    (large,) = small_images.of_kind("large")
    with Image.open(small_images.root / large.name) as image:
        assert (image.format, image.size) == ("JPEG", (3000, 2000))
    assert 700_000 < large.size <= 3 * 1024 * 1024
    for f in small_images.of_kind("screenshot"):
        with Image.open(small_images.root / f.name) as image:
            assert (image.format, image.size) == ("PNG", (1280, 800))
    bad = {f.name: f.expected_status for f in small_images.of_kind("bad")}
    assert set(bad.values()) == {"IMAGE_CORRUPT", "IMAGE_UNSUPPORTED_FORMAT", "IMAGE_TOO_MANY_PIXELS"}
    bomb = small_images.data("bad-bomb.png")
    assert bomb.startswith(PNG_SIGNATURE) and struct.unpack(">II", bomb[16:24]) == (30000, 30000)
    with pytest.raises(OSError), Image.open(small_images.root / "bad-truncated.jpg") as image:
        image.load()
    # Cached: a second call reuses the files; the same parameters elsewhere give the same bytes.
    again = ensure_images(small_images.root, photos=3, large=1, screenshots=2)
    assert [f.sha256 for f in again.files] == [f.sha256 for f in small_images.files]
    elsewhere = ensure_images(tmp_path, photos=1, large=0, screenshots=1)
    assert elsewhere.of_kind("photo")[0].sha256 == small_images.of_kind("photo")[0].sha256
    assert small_images.bytes_of("screenshot")[0].startswith(PNG_SIGNATURE)


def test_image_host_serves_keeps_alive_delays_and_counts(small_images):
    with ImageHost(small_images, slow_delay_s=0.3) as host:
        assert host.allow_entry == f"127.0.0.1:{host.port}"
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=5)
        conn.request("GET", "/photo-000.jpg")
        first = conn.getresponse()
        assert first.status == 200 and first.getheader("Content-Type") == "image/jpeg"
        assert first.read() == small_images.data("photo-000.jpg")
        started = time.perf_counter()
        conn.request("GET", "/slow/screenshot-000.png")  # same connection: keep-alive
        slow = conn.getresponse()
        assert slow.read() == small_images.data("screenshot-000.png")
        assert time.perf_counter() - started >= 0.3
        conn.request("GET", "/nope.jpg")
        missing = conn.getresponse()
        missing.read()
        assert missing.status == 404
        conn.close()
        assert host.stats()["requests"] == 3
        assert host.stats()["slow_requests"] == 1 and host.stats()["not_found"] == 1
        assert host.url("a.jpg", slow=True) == f"http://127.0.0.1:{host.port}/slow/a.jpg"
    with pytest.raises(ValueError):
        ImageHost(small_images, host="0.0.0.0")


def test_image_picks_have_exact_shares(small_images):
    picks = image_picks(small_images, {"photo": 0.8, "screenshot": 0.15, "large": 0.05}, bad_share=0.05)
    kinds = [p.kind for p in picks]
    assert len(picks) == 997
    assert kinds.count("bad") == round(997 * 0.05)
    assert kinds.count("large") == pytest.approx(0.05 * 0.95 * 997, abs=1)
    assert picks == image_picks(small_images, {"photo": 0.8, "screenshot": 0.15, "large": 0.05}, bad_share=0.05)
    with ImageHost(small_images) as host:
        builder = RequestBuilder(small_images, picks, images_per_request=4, mode="url", host=host, slow_share=0.2)
        urls = [image.url for seq in range(250) for image in builder(seq).images]
    slow = sum("/slow/" in url for url in urls[:997])
    assert slow == round(997 * 0.2)
    assert len(builder(0).images) == 4


def test_bad_images_scenario_against_fake_server(small_images):
    async def body():
        async with fake_server(FakeModeration()) as target:
            options = ScenarioOptions(
                scenario="bad-images",
                target=target,
                duration_s=0.5,
                warmup_s=0.1,
                concurrency=4,
                images_per_request=4,
                bad_share=0.25,
            )
            return await run_scenario(options, small_images)

    report = run(body())
    assert report.errors == {}  # broken images fail alone, never the call
    statuses = report.image_statuses
    assert statuses["IMAGE_OK"] > 0 and statuses["IMAGE_UNSUPPORTED_FORMAT"] > 0
    assert statuses["IMAGE_TOO_MANY_PIXELS"] > 0
    # The fake cannot see that the truncated JPEG is truncated: 2 of the 3 bad kinds show.
    failed = sum(statuses.values()) - statuses["IMAGE_OK"]
    assert report.extra["image_error_share"] == pytest.approx(failed / sum(statuses.values()))
    assert 0.25 * 2 / 3 * 0.5 < report.extra["image_error_share"] < 0.25 * 2 / 3 * 1.5
    assert report.extra["scenario"] == "bad-images" and report.extra["bad_share"] == 0.25
    assert report.images == 4 * report.requests


def test_cli_writes_json_and_png(small_images, tmp_path):
    async def body():
        async with fake_server(FakeModeration(delay_s=0.002)) as target:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "loadtest",
                "--target",
                target,
                "--scenario",
                "steady",
                "--duration",
                "0.6",
                "--warmup",
                "0.1",
                "--concurrency",
                "2",
                "--images-dir",
                str(small_images.root),
                "--image-counts",
                "3,1,2",
                "--out",
                str(tmp_path),
                "--name",
                "smoke",
                "--quiet",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=Path(__file__).parents[1],
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            return process.returncode, out.decode(), err.decode()

    code, out, err = run(body())
    assert code == 0, err
    assert "throughput" in out and "p99" in out
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["extra"]["scenario"] == "steady" and saved["requests"] > 0
    assert (tmp_path / "smoke.png").read_bytes().startswith(PNG_SIGNATURE)


def test_only_loopback_targets_are_accepted():
    for target in ("127.0.0.1:50051", "localhost:50051", "[::1]:50051", "ipv4:127.0.0.1:1,127.0.0.2:2"):
        check_loopback_target(target)
    for target in ("10.0.0.1:50051", "192.0.2.7:443", "ipv4:127.0.0.1:1,10.1.1.1:2"):
        with pytest.raises(ValueError):
            check_loopback_target(target)
