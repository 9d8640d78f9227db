"""`python -m loadtest.echo_server sync|aio PORT`: a Classify handler that does nothing, for
`make bench` to measure the gRPC server's own CPU cost per call, sync against grpc.aio."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]
EMPTY = pb.ClassifyResponse(model_name="echo")


class Sync(pb_grpc.ModerationServicer):
    def Classify(self, request, context):
        return EMPTY


class Async(pb_grpc.ModerationServicer):
    async def Classify(self, request, context):
        return EMPTY


def main(kind: str, port: int) -> None:
    if kind == "sync":
        server = grpc.server(ThreadPoolExecutor(16), options=OPTIONS)
        pb_grpc.add_ModerationServicer_to_server(Sync(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print("ready", flush=True)
        server.wait_for_termination()
        return

    async def serve() -> None:
        server = grpc.aio.server(options=OPTIONS)
        pb_grpc.add_ModerationServicer_to_server(Async(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
