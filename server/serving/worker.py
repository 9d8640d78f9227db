"""The body of a model worker process (server.serving.runners.ProcessRunner starts it).

Only the standard library is imported at module level: a spawned worker imports this module on
its main thread at the process's priority, and everything heavy (numpy, Pillow, ONNX Runtime,
the model itself) is imported, loaded and warmed on a thread at `model.load_nice`. Niceness is
per thread on Linux, so the thread that then serves keeps the priority of the serving workers
beside it, which an unprivileged process could not get back once it had lowered its own."""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from server.serving.framing import read_frame, write_frame


def thread_nice(tid: int | None = None) -> int:
    """The nice value of one thread of this process (Linux), read from /proc: os.getpriority
    would need the thread id as well, and this also reads the nice of a thread that has ended."""
    tid = tid or threading.get_native_id()
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def _load_on_low_priority_thread(spec_bytes: bytes) -> tuple[Any, Any, tuple[int, int], Any, int]:
    out: dict[str, Any] = {}

    def load() -> None:
        try:
            # Unpickled here, not in main(): the spec's classes import numpy and Pillow.
            spec = pickle.loads(spec_bytes)
            if spec.model.load_nice:
                with contextlib.suppress(OSError):  # a seccomp policy may forbid it; load anyway
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), spec.model.load_nice)
            out["nice"] = thread_nice()
            from server.serving.loading import load_engine, load_reader

            engine, size = load_engine(spec, spec.model.threads)
            out["loaded"] = (spec, engine, size, load_reader(spec))
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=load, name="load-model")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    spec, engine, size, reader = out["loaded"]
    return spec, engine, size, reader, out["nice"]


def worker_main(inbox: Connection, outbox: Connection, spec_bytes: bytes) -> None:
    """Reads batches from `inbox` and answers each on `outbox`, in order, until None or EOF.

    The Connections only carry the pipes into this process: what crosses them is framed by
    server.serving.framing, written and read on their file descriptors."""
    read_fd, write_fd = inbox.fileno(), outbox.fileno()
    try:
        spec, engine, size, reader, load_nice = _load_on_low_priority_thread(spec_bytes)
    except BaseException as exc:  # report why, instead of a bare EOF in the parent
        write_frame(write_fd, ("error", f"{type(exc).__name__}: {exc}"))
        return
    from server.serving.batch import process_batch

    write_frame(write_fd, ("ready", engine.name, load_nice, thread_nice()))
    while True:
        try:
            items = read_frame(read_fd)
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if items is None:
            return
        write_frame(write_fd, process_batch(engine, items, size, spec.decode, reader))
