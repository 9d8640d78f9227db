"""Whole-request validation: anything wrong here is INVALID_ARGUMENT with a message that says
what, before any byte is fetched."""

from __future__ import annotations

from urllib.parse import urlsplit

from server.config import LimitsConfig
from server.errors import InvalidRequest
from server.types import ClassifyCall


def validate_call(call: ClassifyCall, limits: LimitsConfig) -> None:
    if len(call.post_id) > limits.max_id_length:
        raise InvalidRequest(f"post_id is {len(call.post_id)} characters, limit {limits.max_id_length}")
    if not call.images:
        raise InvalidRequest("request has no images")
    if len(call.images) > limits.max_images:
        raise InvalidRequest(f"request has {len(call.images)} images, limit {limits.max_images}")
    seen: set[str] = set()
    for index, image in enumerate(call.images):
        where = f"images[{index}]"
        if not image.id:
            raise InvalidRequest(f"{where}: id is empty")
        if len(image.id) > limits.max_id_length:
            raise InvalidRequest(f"{where}: id is {len(image.id)} characters, limit {limits.max_id_length}")
        if image.id in seen:
            raise InvalidRequest(f"{where}: id {image.id!r} is used twice in the request")
        seen.add(image.id)
        if image.content is not None:
            if len(image.content) == 0:
                raise InvalidRequest(f"{where} ({image.id!r}): content is empty")
            if len(image.content) > limits.max_inline_bytes:
                raise InvalidRequest(
                    f"{where} ({image.id!r}): content is {len(image.content)} bytes, limit {limits.max_inline_bytes}"
                )
        elif image.url:
            _validate_url(image.url, where, image.id, limits)
        else:
            raise InvalidRequest(f"{where} ({image.id!r}): neither url nor content is set")


def _validate_url(url: str, where: str, image_id: str, limits: LimitsConfig) -> None:
    if len(url) > limits.max_url_length:
        raise InvalidRequest(f"{where} ({image_id!r}): url is {len(url)} characters, limit {limits.max_url_length}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidRequest(f"{where} ({image_id!r}): url is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(
            f"{where} ({image_id!r}): url scheme {parts.scheme or '(none)'!r} is not allowed; use http or https"
        )
    if not parts.hostname:
        raise InvalidRequest(f"{where} ({image_id!r}): url has no host")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise InvalidRequest(f"{where} ({image_id!r}): url contains whitespace or control characters")
