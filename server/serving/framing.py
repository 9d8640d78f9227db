"""The frames that cross a worker's pipes, both ways: an 8-byte big-endian length, then that many
bytes of pickle. The parent decodes incrementally on its event loop (FrameDecoder); the worker
reads and writes blocking (read_frame, write_frame). Standard library only: the worker imports
this before anything heavy (see worker.py)."""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

_HEADER = struct.Struct("!Q")


def encode(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Bytes as they arrive, in pieces of any size -> the objects whose frames they complete."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        done: list[Any] = []
        start = 0
        while len(self._buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer, start)
            end = start + _HEADER.size + size
            if len(self._buffer) < end:
                break
            done.append(pickle.loads(self._buffer[start + _HEADER.size : end]))
            start = end
        # One deletion per call, not per frame: a burst of answers is not shifted once each.
        del self._buffer[:start]
        return done


def _read_exactly(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError("the pipe closed inside a frame" if got else "the pipe closed")
        got += n
    return buffer


def read_frame(fd: int) -> Any:
    """Blocking: the next object from `fd`. EOFError when the other end has closed."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return pickle.loads(_read_exactly(fd, size))


def write_frame(fd: int, obj: Any) -> None:
    """Blocking: all of obj's frame, however many writes the pipe takes."""
    view = memoryview(encode(obj))
    while view:
        view = view[os.write(fd, view) :]
