"""Typed exceptions of the core, mapped to status codes in one place (server/api/moderation.py
for gRPC); nothing else in the core knows about gRPC.

    ImageError                 one image's problem -> that image's status (model.errors; re-exported)
    ModerationError            the whole call's problem -> the call's status code
     ├── InvalidRequest        INVALID_ARGUMENT: malformed request, the message names the field
     ├── Overloaded            RESOURCE_EXHAUSTED: too many calls or queued images; back off and retry
     ├── ModelUnavailable      UNAVAILABLE: no model loaded yet, or draining
     ├── DeadlineExceeded      DEADLINE_EXCEEDED
     ├── NotFound              NOT_FOUND: an unknown model, version or signature
     ├── Unauthenticated       UNAUTHENTICATED: missing or wrong credentials
     └── AuditStoreUnavailable UNAVAILABLE: the audit database cannot be reached; retry later
"""

from __future__ import annotations

from model.errors import ImageError, ImageErrorCode

__all__ = [
    "AuditStoreUnavailable",
    "DeadlineExceeded",
    "ImageError",
    "ImageErrorCode",
    "InvalidRequest",
    "ModelUnavailable",
    "ModerationError",
    "NotFound",
    "Overloaded",
    "Unauthenticated",
]


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
