"""Command-line client: `python -m server.api.client http://host/a.jpg ./b.png`.

URLs are sent for the server to fetch; local paths are sent inline as bytes. Prints one line
per image and the post's decision; `--json` prints the response as JSON instead."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

import grpc
from google.protobuf import json_format

from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc

# Retries UNAVAILABLE (a replica restarting or draining) with backoff; round_robin spreads
# calls over every address the target resolves to. Used by this client and the load generator.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": "moderation.v1.Moderation"}],
                "timeout": "30s",
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


def channel_options() -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]


def open_channel(target: str, ca: str = "", cert: str = "", key: str = "", server_name: str = "") -> grpc.Channel:
    """Plaintext, TLS (ca: the server's CA, or the system roots with ca="system") or mutual TLS
    (cert + key: this client's certificate)."""
    options = channel_options()
    if not (ca or cert):
        return grpc.insecure_channel(target, options=options)
    roots = None if ca in ("", "system") else Path(ca).read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, credentials, options=options)


def build_request(sources: list[str], post_id: str) -> pb.ClassifyRequest:
    request = pb.ClassifyRequest(post_id=post_id)
    for index, source in enumerate(sources):
        image_id = f"{index}:{Path(source).name}"[:200]
        if "://" in source:
            request.images.add(id=image_id, url=source)
        else:
            request.images.add(id=image_id, content=Path(source).read_bytes())
    return request


def format_reading(reading: pb.Reading) -> str:
    status = pb.ReadingStatus.Name(reading.status).removeprefix("READING_").lower()
    if reading.status == pb.READING_SKIPPED:
        return "text: none (gate)"
    found = ", ".join(
        f"{pb.EntityType.Name(f.entity).removeprefix('ENTITY_').lower()} {f.masked} ({f.confidence:.2f})"
        for f in reading.findings
    )
    fused = f"; CNN alone personal_info={reading.cnn_personal_info:.3f}" if reading.fused else ""
    return f"text: {status}, {reading.lines} lines; found: {found or 'nothing'}{fused}"


def format_response(response: pb.ClassifyResponse) -> str:
    lines = [f"model {response.model_name} version {response.model_version}  request {response.request_id}"]
    for result in response.results:
        decision = pb.Decision.Name(result.decision).removeprefix("DECISION_")
        if result.status.code == pb.IMAGE_OK:
            scores = "  ".join(f"{name}={score:.3f}" for name, score in sorted(result.scores.items()))
            sampled = "  (sampled for audit)" if result.audit_sampled else ""
            lines.append(f"{result.id:<28} {decision:<7} top={result.top_class:<14} {scores}{sampled}")
            if result.HasField("reading"):
                lines.append(" " * 29 + format_reading(result.reading))
        else:
            status = pb.ImageStatusCode.Name(result.status.code).removeprefix("IMAGE_")
            lines.append(f"{result.id:<28} {decision:<7} {status}: {result.status.message}")
    lines.append(f"post decision: {pb.Decision.Name(response.post_decision).removeprefix('DECISION_')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.api.client", description=__doc__)
    parser.add_argument("sources", nargs="+", help="image URLs (fetched by the server) or local files (sent inline)")
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--post-id", default="")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--tls-ca", default="", help="CA file of the server's certificate (enables TLS)")
    parser.add_argument("--tls-cert", default="", help="client certificate, for mutual TLS")
    parser.add_argument("--tls-key", default="", help="client key, for mutual TLS")
    parser.add_argument("--tls-server-name", default="", help="expected name in the server's certificate")
    parser.add_argument(
        "--token", default=os.environ.get("MODERATION_TOKEN", ""), help="bearer token (default: $MODERATION_TOKEN)"
    )
    args = parser.parse_args(argv)
    request = build_request(args.sources, args.post_id or uuid.uuid4().hex)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    with open_channel(args.target, args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name) as channel:
        try:
            response = pb_grpc.ModerationStub(channel).Classify(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(response) if args.json else format_response(response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
