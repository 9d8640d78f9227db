"""Load for an open inference protocol (v2) server such as KServe's, driven by loadtest.generator:
the same closed loop, channels and statistics as for our Classify, with another Method.

- gRPC: /inference.GRPCInferenceService/ModelInfer, the image as the one element of a BYTES
  tensor's bytes_contents. The messages are built at run time from loadtest/grpc_predict_v2.proto
  (grpc.protos, which grpcio-tools provides), so nothing is generated at build time and kserve
  is never imported into the service's venv.
- REST: POST /v2/models/<name>/infer, JSON with the image base64-encoded as the BYTES
  tensor's one string: JSON cannot carry raw bytes, and kserve 0.21 fails non-UTF-8 BYTES sent
  with the binary tensor extension (InferRequest.from_bytes turns them back into JSON strings).
  Each HttpChannel is one keep-alive HTTP/1.1 connection that carries one call at a time, so 8
  channels x 8 calls is 8 connections with one call each. One channel with 8 calls in flight
  would just queue them behind one connection; it is not a shape HTTP/1.1 can serve."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import grpc
import numpy as np

from loadtest.generator import CallFailed, Method

PROTO = "loadtest/grpc_predict_v2.proto"  # resolved against sys.path, which holds the repository root
SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
INPUT_NAME = "image"
OUTPUT_NAME = "scores"
OK = "IMAGE_OK"
BAD = "BAD_RESPONSE"  # an answer without `classes` scores: counted per image, like a failed image


@functools.cache
def _protos_and_services() -> tuple[Any, Any]:
    return grpc.protos_and_services(PROTO)


def messages() -> Any:
    """The module of the v2 messages (ModelInferRequest, ModelReadyRequest, ...)."""
    return _protos_and_services()[0]


def services() -> Any:
    """The module with GRPCInferenceServiceStub."""
    return _protos_and_services()[1]


# --- gRPC ---------------------------------------------------------------------------------------


def grpc_requests(photos: Sequence[bytes], model_name: str) -> Callable[[int], Any]:
    """Like bench.inline_requests: the seq-th request holds the seq-th photo, built per call."""
    pb2 = messages()
    tensor = pb2.ModelInferRequest.InferInputTensor

    def make(seq: int) -> Any:
        return pb2.ModelInferRequest(model_name=model_name, id=f"bench-{seq}", inputs=[
            tensor(name=INPUT_NAME, datatype="BYTES", shape=[1],
                   contents=pb2.InferTensorContents(bytes_contents=[photos[seq % len(photos)]]))])
    return make


def grpc_scores(response: Any) -> np.ndarray:
    """The scores of a ModelInferResponse, from raw_output_contents (where KServe puts numpy
    outputs) or from the typed contents."""
    for index, output in enumerate(response.outputs):
        if output.name == OUTPUT_NAME:
            if len(response.raw_output_contents) > index:
                return np.frombuffer(response.raw_output_contents[index], dtype="<f4")
            return np.asarray(output.contents.fp32_contents, dtype=np.float32)
    return np.zeros(0, dtype=np.float32)


def grpc_method(classes: int) -> Method:
    pb2 = messages()

    def statuses(response: Any) -> tuple[str, ...]:
        return (OK,) if grpc_scores(response).size == classes else (BAD,)

    return Method(path=MODEL_INFER, request_serializer=pb2.ModelInferRequest.SerializeToString,
                  response_deserializer=pb2.ModelInferResponse.FromString, images=lambda _request: 1,
                  statuses=statuses)


# --- REST ---------------------------------------------------------------------------------------


def rest_requests(photos: Sequence[bytes]) -> Callable[[int], bytes]:
    """JSON bodies, built per call like bench.inline_requests; each photo is base64-encoded once."""
    encoded = [base64.b64encode(photo).decode() for photo in photos]

    def make(seq: int) -> bytes:
        return json.dumps({"id": f"bench-{seq}", "inputs": [{"name": INPUT_NAME, "shape": [1], "datatype": "BYTES",
                                                             "data": [encoded[seq % len(encoded)]]}]},
                          separators=(",", ":")).encode()
    return make


def _rest_serialize(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"Content-Type": "application/json"}


def rest_scores(response: dict[str, Any]) -> np.ndarray:
    for output in response.get("outputs", []):
        if output.get("name") == OUTPUT_NAME:
            return np.asarray(output.get("data", []), dtype=np.float32).reshape(-1)
    return np.zeros(0, dtype=np.float32)


def rest_method(model_name: str, classes: int) -> Method:
    def statuses(response: dict[str, Any]) -> tuple[str, ...]:
        return (OK,) if rest_scores(response).size == classes else (BAD,)

    return Method(path=f"/v2/models/{model_name}/infer", request_serializer=_rest_serialize,
                  response_deserializer=json.loads, images=lambda _request: 1, statuses=statuses)


class HttpChannel:
    """One keep-alive HTTP/1.1 connection to `target`, with the part of a grpc.aio channel's
    interface that loadtest.generator uses. A call's request_serializer returns (body, headers);
    a status other than 200 fails the call with code HTTP_<status>."""

    def __init__(self, target: str, ready_path: str = "/v2/health/ready") -> None:
        self.base = f"http://{target}"
        self.ready_path = ready_path
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # limit=1: this channel is one connection, as each of the generator's gRPC channels is.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), auto_decompress=False)
        return self._session

    async def channel_ready(self) -> None:
        """Opens the connection (and keeps it), as a gRPC channel connects before the load."""
        while True:
            try:
                async with self._open().get(self.base + self.ready_path) as response:
                    await response.read()
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)

    def unary_unary(self, path: str, request_serializer: Callable[[Any], tuple[bytes, dict[str, str]]],
                    response_deserializer: Callable[[bytes], Any]) -> Callable[..., Any]:
        url = self.base + path

        async def call(request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
            body, headers = request_serializer(request)
            try:
                async with self._open().post(url, data=body, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                    payload = await response.read()
            except TimeoutError:
                raise CallFailed("DEADLINE_EXCEEDED") from None
            except aiohttp.ClientConnectionError as exc:
                raise CallFailed("UNAVAILABLE", str(exc)) from None
            if response.status != 200:
                raise CallFailed(f"HTTP_{response.status}", payload[:200].decode(errors="replace"))
            return response_deserializer(payload)
        return call

    async def close(self) -> None:
        """Closes the connection; the channel opens a new one if used again."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def http_channels(target: str, count: int, _options: Sequence[tuple[str, Any]] | None = None) -> list[HttpChannel]:
    """A loadtest.generator ChannelFactory: `count` HttpChannels, i.e. `count` connections."""
    return [HttpChannel(target) for _ in range(count)]
