"""The container's health check: exit 0 when the server's grpc.health.v1 says SERVING.

    python deploy/healthcheck.py [--target 127.0.0.1:50051] [--service moderation.v1.Moderation]

Reads the server's own MODERATION_SERVER_* variables, so it checks the port the server really
listens on, over TLS when the server uses TLS (trusting MODERATION_HEALTHCHECK_CA, default the
server's client CA or its own certificate), presenting MODERATION_HEALTHCHECK_CLIENT_CERT/KEY
when the server asks for client certificates. Kubernetes' native gRPC probe speaks plaintext
only, so a TLS deployment uses this as an exec probe instead (deploy/k8s/overlays/prod)."""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def channel(target: str) -> grpc.Channel:
    env = os.environ
    if not env.get("MODERATION_SERVER_TLS_CERT"):
        return grpc.insecure_channel(target)
    ca = (
        env.get("MODERATION_HEALTHCHECK_CA")
        or env.get("MODERATION_SERVER_TLS_CLIENT_CA")
        or env["MODERATION_SERVER_TLS_CERT"]
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca),
        private_key=_read(env.get("MODERATION_HEALTHCHECK_CLIENT_KEY", "")),
        certificate_chain=_read(env.get("MODERATION_HEALTHCHECK_CLIENT_CERT", "")),
    )
    # The certificate names the service's DNS name, not 127.0.0.1.
    override = env.get("MODERATION_HEALTHCHECK_SERVER_NAME", "")
    options = [("grpc.ssl_target_name_override", override)] if override else []
    return grpc.secure_channel(target, credentials, options=options)


def main(argv: list[str] | None = None) -> int:
    port = os.environ.get("MODERATION_SERVER_PORT", "50051")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default=f"127.0.0.1:{port}")
    parser.add_argument("--service", default="moderation.v1.Moderation")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        with channel(args.target) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        print(f"unhealthy: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
