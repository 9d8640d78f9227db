"""TLS credentials and the bearer-token check for the API port."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

import grpc

from server.config import ServerConfig


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert and not config.tls_key:
        if config.tls_client_ca:
            raise ValueError("server.tls_client_ca needs server.tls_cert and server.tls_key")
        return None
    if not (config.tls_cert and config.tls_key):
        raise ValueError("TLS needs both server.tls_cert and server.tls_key")
    key = Path(config.tls_key).read_bytes()
    chain = Path(config.tls_cert).read_bytes()
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def load_tokens(path: str) -> frozenset[bytes]:
    """SHA-256 digests of the tokens: compared in constant time, and the tokens themselves do not
    linger in the process's memory beyond start-up."""
    lines = Path(path).read_text().splitlines()
    tokens = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not tokens:
        raise ValueError(f"{path} holds no token")
    return frozenset(hashlib.sha256(t.encode()).digest() for t in tokens)


def token_accepted(metadata: Iterable[tuple[str, str | bytes]] | None, accepted: frozenset[bytes]) -> bool:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            digest = hashlib.sha256(value.removeprefix("Bearer ").strip().encode()).digest()
            # Check every accepted token, so timing does not tell which prefix matched.
            return any([hmac.compare_digest(digest, t) for t in accepted])
    return False
