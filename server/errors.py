"""Typed exceptions of the core. The gRPC layer maps them to status codes in one place
(server/api/moderation.py); nothing else in the core knows about gRPC."""

from __future__ import annotations

import enum


class ImageErrorCode(enum.Enum):
    """What went wrong with one image. Names match the proto's ImageStatusCode minus the
    `IMAGE_` prefix, so the mapping is by name."""

    FETCH_FAILED = "FETCH_FAILED"
    FETCH_TIMEOUT = "FETCH_TIMEOUT"
    HTTP_ERROR = "HTTP_ERROR"
    TOO_LARGE = "TOO_LARGE"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    CORRUPT = "CORRUPT"
    TOO_MANY_PIXELS = "TOO_MANY_PIXELS"
    DESTINATION_NOT_ALLOWED = "DESTINATION_NOT_ALLOWED"
    INFERENCE_FAILED = "INFERENCE_FAILED"


class ImageError(Exception):
    """A problem with one image: becomes that image's status, never the whole call's."""

    def __init__(self, code: ImageErrorCode, message: str, http_status: int = 0):
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


class ModerationError(Exception):
    """A problem with the whole call."""


class InvalidRequest(ModerationError):
    """The request is malformed; the message says what is wrong."""


class Overloaded(ModerationError):
    """Too many calls or queued images; the caller should back off and retry."""


class ModelUnavailable(ModerationError):
    """No model is loaded (yet), or the server is draining."""


class DeadlineExceeded(ModerationError):
    """The call's deadline passed before the answer was ready."""


class NotFound(ModerationError):
    """The request names a model, version or signature that is not served here."""


class Unauthenticated(ModerationError):
    """Missing or wrong credentials."""


class AuditStoreUnavailable(ModerationError):
    """The audit database cannot be reached or failed; the caller may retry later."""
