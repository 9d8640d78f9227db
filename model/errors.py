"""The per-image error: what went wrong with one image. It lives beside the preprocessing that
raises most of them, so that training (which decodes with model.preprocess) and the server
share one form; server.errors re-exports it within the server's hierarchy."""

from __future__ import annotations

import enum


class ImageErrorCode(enum.Enum):
    """Names match the proto's ImageStatusCode minus the `IMAGE_` prefix: the mapping is by name."""

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
    """A problem with one image: becomes that image's status, never the whole call's.

    It crosses from worker processes to the server as it is: __reduce__ pickles it by its
    constructor's arguments (an exception with its own __init__ does not unpickle otherwise)."""

    def __init__(self, code: ImageErrorCode, message: str, http_status: int = 0):
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status

    def __reduce__(self) -> tuple[type[ImageError], tuple[ImageErrorCode, str, int]]:
        return type(self), (self.code, self.message, self.http_status)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageError) and (self.code, self.message, self.http_status) == (
            other.code,
            other.message,
            other.http_status,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.http_status))
