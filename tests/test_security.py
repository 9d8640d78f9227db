"""TLS, mutual TLS and bearer tokens on the API port, with a CA generated for the test."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from moderation_api.v1 import moderation_pb2 as pb
from moderation_api.v1 import moderation_pb2_grpc as pb_grpc
from server.api.client import open_channel
from tests.conftest import encode
from tests.harness import ServerThread, make_config


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    for name in ("ca", "rogue-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ca, ext in (
        ("server", "ca", ["-extfile", "server.ext"]),
        ("client", "ca", []),
        ("rogue-client", "rogue-ca", []),
    ):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{ca}.pem",
            "-CAkey",
            f"{ca}.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.pem",
            *ext,
            cwd=d,
        )
    (d / "tokens").write_text("# accepted tokens\ns3cret-backend-a\ns3cret-backend-b\n")
    return d


REQUEST = pb.ClassifyRequest(post_id="p", images=[pb.ImageInput(id="a", content=encode((0, 200, 0)))])


def call(channel, token=None):
    metadata = [("authorization", f"Bearer {token}")] if token else None
    return pb_grpc.ModerationStub(channel).Classify(REQUEST, timeout=10, metadata=metadata)


def test_mutual_tls_and_tokens(pki, model_repo, tmp_path):
    config = make_config(
        model_repo,
        tmp_path / "audit.sqlite3",
        server={
            "tls_cert": str(pki / "server.pem"),
            "tls_key": str(pki / "server.key"),
            "tls_client_ca": str(pki / "ca.pem"),
            "auth_tokens_file": str(pki / "tokens"),
        },
    )
    running = ServerThread(config).start()
    ca = str(pki / "ca.pem")
    try:
        with open_channel(running.target, ca, str(pki / "client.pem"), str(pki / "client.key")) as channel:
            assert call(channel, "s3cret-backend-b").results[0].top_class == "ham"
            for token in (None, "wrong"):
                with pytest.raises(grpc.RpcError) as info:
                    call(channel, token)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # Probes need no token.
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        # No client certificate, a certificate from another CA, or plaintext: no connection.
        for channel in (
            open_channel(running.target, ca),
            open_channel(running.target, ca, str(pki / "rogue-client.pem"), str(pki / "rogue-client.key")),
            grpc.insecure_channel(running.target),
        ):
            with channel, pytest.raises(grpc.RpcError) as info:
                call(channel, "s3cret-backend-a")
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop()


def test_server_only_tls_and_the_cli_client(pki, model_repo, tmp_path):
    config = make_config(
        model_repo,
        tmp_path / "audit.sqlite3",
        server={"tls_cert": str(pki / "server.pem"), "tls_key": str(pki / "server.key")},
    )
    running = ServerThread(config).start()
    image = tmp_path / "red.png"
    image.write_bytes(encode((255, 0, 0), fmt="PNG"))
    try:
        with open_channel(running.target, str(pki / "ca.pem")) as channel:
            assert call(channel).results[0].top_class == "ham"
        with open_channel(running.target, str(pki / "rogue-ca.pem")) as channel, pytest.raises(grpc.RpcError):
            call(channel)  # a server certificate from an unknown CA is refused by the client
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "server.api.client",
                "--target",
                running.target,
                "--tls-ca",
                str(pki / "ca.pem"),
                str(image),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        running.stop()
    assert out.returncode == 0, out.stderr
    assert "BLOCK" in out.stdout and "top=sexual" in out.stdout and "post decision: BLOCK" in out.stdout
