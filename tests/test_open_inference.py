"""The generator driving another protocol (loadtest.generator.Method, channel_factory), as
`make bench-frameworks` drives KServe: open inference protocol (v2) requests over gRPC and over
REST, against small fake v2 servers. kserve itself is never installed for the tests."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
from aiohttp import web
from grpc import aio

from loadtest import open_inference as oi
from loadtest.generator import run_load

CLASSES = 3
PHOTOS = [b"\xff\xd8\xff photo one", b"\xff\xd8\xff photo two"]


class FakeV2(oi.services().GRPCInferenceServiceServicer):
    """Answers ModelInfer as KServe does (scores in raw_output_contents), except every
    short_every-th call, which gets too few scores."""

    def __init__(self, short_every: int = 0) -> None:
        self.short_every = short_every
        self.calls = 0
        self.images: list[bytes] = []

    async def ModelInfer(self, request, context):
        pb2 = oi.messages()
        self.calls += 1
        self.images += list(request.inputs[0].contents.bytes_contents)
        classes = CLASSES - 1 if self.short_every and self.calls % self.short_every == 0 else CLASSES
        scores = np.full((1, classes), 1 / classes, dtype="<f4")
        output = pb2.ModelInferResponse.InferOutputTensor(name="scores", datatype="FP32", shape=[1, classes])
        return pb2.ModelInferResponse(
            model_name=request.model_name, id=request.id, outputs=[output], raw_output_contents=[scores.tobytes()]
        )


def test_model_infer_over_grpc_through_the_generator():
    async def body():
        servicer = FakeV2(short_every=5)
        server = aio.server()
        oi.services().add_GRPCInferenceServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            report = await run_load(
                f"127.0.0.1:{port}",
                requests_factory=oi.grpc_requests(PHOTOS, "m"),
                method=oi.grpc_method(CLASSES),
                concurrency=4,
                channels=2,
                max_requests=40,
                duration_s=10,
            )
        finally:
            await server.stop(0)
        return servicer, report

    servicer, report = asyncio.run(body())
    assert report.requests == report.ok == servicer.calls == 40
    assert report.images == 40
    assert report.image_statuses == {oi.OK: 32, oi.BAD: 8}
    assert set(servicer.images) == set(PHOTOS)


def test_model_infer_over_rest_through_the_generator():
    seen: dict[str, int] = {"calls": 0}
    peers: set[tuple[str, int]] = set()

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def infer(request: web.Request) -> web.Response:
        seen["calls"] += 1
        peers.add(request.transport.get_extra_info("peername"))
        if seen["calls"] % 4 == 0:
            return web.json_response({"error": "busy"}, status=503)
        tensor = (await request.json())["inputs"][0]
        assert tensor["datatype"] == "BYTES" and tensor["shape"] == [1]
        assert base64.b64decode(tensor["data"][0]) in PHOTOS
        return web.Response(
            body=json.dumps(
                {"outputs": [{"name": "scores", "shape": [1, CLASSES], "datatype": "FP32", "data": [0.5, 0.25, 0.25]}]}
            ),
            content_type="application/json",
        )

    async def body():
        app = web.Application()
        app.router.add_get("/v2/health/ready", ready)
        app.router.add_post("/v2/models/m/infer", infer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            return await run_load(
                f"127.0.0.1:{port}",
                requests_factory=oi.rest_requests(PHOTOS),
                method=oi.rest_method("m", CLASSES),
                channel_factory=oi.http_channels,
                concurrency=4,
                channels=2,
                max_requests=40,
                duration_s=10,
            )
        finally:
            await runner.cleanup()

    report = asyncio.run(body())
    assert report.requests == 40
    assert report.errors == {"HTTP_503": 10}
    assert report.image_statuses == {oi.OK: 30}
    assert len(peers) == 2  # one keep-alive connection per channel, whatever the calls in flight
