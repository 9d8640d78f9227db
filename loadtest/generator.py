"""The async load generator: drives moderation.v1.Moderation/Classify over grpc.aio (or another
unary method, see Method, even over another transport, see ChannelFactory) and reports what the
service did.

Two ways of offering load:

- closed loop (`rate=None`): `concurrency` workers, each sending its next request as soon as
  the previous one answers. Measures capacity: throughput at a given number of calls in flight.
- open loop (`rate=R` requests/s, constant or a function of time): requests start on a
  schedule (Poisson or evenly spaced arrivals) whether or not earlier ones have answered, as
  independent users do. Measures latency at a given load without coordinated omission. At most
  `max_outstanding` calls are in flight; arrivals beyond that are counted as `skipped` rather
  than queued, so an overloaded server cannot make the generator run away.

Requests go round-robin over `channels` gRPC channels, each its own TCP connection (HTTP/2
multiplexes every call of a channel over one connection, so one channel is one connection's
worth of flow control and one server-side reader).

    report = await run_load("127.0.0.1:50051", requests_factory=make_request, concurrency=8,
                            channels=1, duration_s=20, warmup_s=2)
    print(report.table()); report.write_json("out.json"); report.write_plot("out.png")

Timing: the run lasts warmup_s + duration_s (or until max_requests have been sent, or `stop` is
set), then waits for calls in flight. Requests started during the warm-up are left out of every
statistic."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from loadtest import plot
from moderation_api.v1 import moderation_pb2 as pb
from server.api.client import channel_options as recommended_channel_options

METHOD = "/moderation.v1.Moderation/Classify"

RequestFactory = Callable[[int], Any]  # pb.ClassifyRequest unless another Method is given
Rate = float | Callable[[float], float]
ProgressCallback = Callable[[dict[str, Any]], None]
# (target, count, channel options or None) -> `count` channels, each its own connection: objects
# with channel_ready(), close() and unary_unary(path, request_serializer=, response_deserializer=),
# as grpc.aio channels have. make_channels() by default.
ChannelFactory = Callable[[str, int, Sequence[tuple[str, Any]] | None], Sequence[Any]]

_IMAGE_STATUS_NAMES = {value: name for name, value in pb.ImageStatusCode.items()}


def _classify_images(request: pb.ClassifyRequest) -> int:
    return len(request.images)


def _classify_statuses(response: pb.ClassifyResponse) -> tuple[str, ...]:
    return tuple(_IMAGE_STATUS_NAMES.get(r.status.code, str(r.status.code)) for r in response.results)


@dataclass(frozen=True)
class Method:
    """The call every request makes: its path, how messages cross the wire, how many images a
    request holds and what a response says about each (ImageStatusCode names, in request
    order). The default is this service's Classify; another one lets the same generator drive
    another server, e.g. the open inference protocol's ModelInfer (loadtest/open_inference.py)."""

    path: str = METHOD
    request_serializer: Callable[[Any], Any] = pb.ClassifyRequest.SerializeToString
    response_deserializer: Callable[[Any], Any] = pb.ClassifyResponse.FromString
    images: Callable[[Any], int] = _classify_images
    statuses: Callable[[Any], tuple[str, ...]] = _classify_statuses


CLASSIFY = Method()


@dataclass(frozen=True, slots=True)
class Serialized:
    """A request already in wire form and the number of images it holds. Building and
    serialising a message that carries a photo copies it twice per call, CPU that the load
    generator takes from the server it shares cores with; a factory that returns these has
    prepared bytes sent as they are (gRPC channels), whatever the method."""

    payload: bytes
    images: int


def _as_is(payload: bytes) -> bytes:
    return payload


def prepared(
    make: Callable[[int], Any],
    period: int,
    serializer: Callable[[Any], bytes] | None = None,
    images: Callable[[Any], int] = _classify_images,
) -> Callable[[int], Serialized]:
    """A factory of Serialized requests from one that builds messages, for a `make` whose
    requests repeat every `period` calls: the period's requests are built and serialised once."""
    serializer = serializer or (lambda request: request.SerializeToString())
    cache = [Serialized(serializer(request), images(request)) for request in map(make, range(period))]
    return lambda seq: cache[seq % period]


class CallFailed(Exception):
    """A failed call of a channel that is not gRPC (an HTTP one, say), with the code to record
    for it (e.g. "HTTP_503"), as a gRPC call records its status code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


@dataclass(slots=True)
class RequestRecord:
    seq: int
    channel: int
    start_s: float  # since the run started (warm-up included)
    latency_s: float
    code: str  # "OK", a grpc.StatusCode name, or "CLIENT_<exception>" for a failure on this side
    images: int
    image_statuses: tuple[str, ...] = ()  # ImageStatusCode names, in request order; empty if the call failed
    # Open loop: how late the call left against its scheduled arrival. Large values mean the
    # generator itself could not keep up (CPU), and the offered rate was lower than asked.
    lag_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.latency_s


# --- statistics -------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence: the smallest value with at least q% of
    the values at or below it. Always a value that was observed, never an interpolation."""
    if not sorted_values:
        return math.nan
    if q <= 0:
        return sorted_values[0]
    rank = math.ceil(q / 100.0 * len(sorted_values) - 1e-9)
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p95/p99/max/min/mean in milliseconds (NaN for an empty list)."""
    values = sorted(latencies_s)
    out = {f"p{q:g}": percentile(values, q) * 1000.0 for q in (50, 90, 95, 99)}
    out["max"] = values[-1] * 1000.0 if values else math.nan
    out["min"] = values[0] * 1000.0 if values else math.nan
    out["mean"] = sum(values) / len(values) * 1000.0 if values else math.nan
    return out


def machine_info() -> dict[str, Any]:
    """What the README quotes beside each figure."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
    }


# --- the report -------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What one run measured. Statistics cover the requests *started* after the warm-up and
    before sending stopped (`requests`), all of which are waited for, so a slow tail is never
    cut off. Throughput is completions per second inside the measured window
    [warmup_s, warmup_s + window_s]: what the service sustained while the load was applied."""

    target: str
    mode: str  # "closed" or "open"
    concurrency: int | None  # closed loop: the number of workers
    rate: float | None  # open loop: the mean offered rate over the run, requests/s
    arrivals: str | None  # open loop: "poisson" or "uniform"
    channels: int
    warmup_s: float
    duration_s: float  # as asked
    window_s: float  # measured window actually used (shorter when max_requests ended the run)
    elapsed_s: float  # the whole run, warm-up and drain included
    requests: int
    ok: int
    images: int  # images in the measured requests
    throughput_rps: float  # completions (any status) per second in the window
    ok_rps: float  # OK completions per second in the window
    images_per_s: float  # images of OK completions per second in the window
    send_rate_rps: float  # measured requests started per second (open loop: the achieved rate)
    latency_ms: dict[str, float]  # over OK calls
    latency_all_ms: dict[str, float]  # over every measured call, failures included
    schedule_lag_ms: dict[str, float] | None  # open loop: lateness of calls against their schedule
    errors: dict[str, int]  # non-OK calls by status code
    image_statuses: dict[str, int]  # per-image status counts over OK calls
    max_outstanding: int  # most calls in flight at once, warm-up included
    max_outstanding_limit: int | None  # open loop's cap
    skipped: int  # open loop arrivals not sent because max_outstanding calls were in flight
    warmup_requests: int
    # Rates (per second) and latency percentiles in bins of timeline_bin_s, from the run's start.
    timeline: list[dict[str, float]]
    timeline_bin_s: float
    started_at: str
    machine: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # scenario parameters, image host counters...
    records: list[RequestRecord] = field(default_factory=list, repr=False)

    @property
    def error_rate(self) -> float:
        return (self.requests - self.ok) / self.requests if self.requests else 0.0

    def to_dict(self, include_records: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "records"}
        if include_records:
            out["records"] = [asdict(r) for r in self.records]
        return _json_safe(out)

    def write_json(self, path: Path | str, include_records: bool = False) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(include_records), indent=1) + "\n")
        return path

    def describe(self) -> str:
        load = (
            f"closed loop, concurrency {self.concurrency}"
            if self.mode == "closed"
            else f"open loop, {self.arrivals} arrivals at {self.rate:.4g} req/s"
        )
        return f"{load}, {self.channels} channel{'s' if self.channels != 1 else ''}"

    def table(self) -> str:
        lat = self.latency_ms
        lines = [
            f"target {self.target}  {self.describe()}  {self.window_s:.1f} s measured (+{self.warmup_s:g} s warm-up)",
            f"  requests   {self.requests:>8}   ok {self.ok}   warm-up {self.warmup_requests}"
            + (f"   skipped {self.skipped}" if self.mode == "open" else ""),
            f"  throughput {self.throughput_rps:>8.1f} req/s   ok {self.ok_rps:.1f} req/s   "
            f"{self.images_per_s:.1f} images/s   sent {self.send_rate_rps:.1f} req/s",
            f"  latency ms p50 {lat['p50']:.1f}   p95 {lat['p95']:.1f}   p99 {lat['p99']:.1f}   "
            f"max {lat['max']:.1f}   (OK calls)",
            f"  in flight  max {self.max_outstanding}"
            + (f"   schedule lag ms p99 {self.schedule_lag_ms['p99']:.1f}" if self.schedule_lag_ms else ""),
        ]
        if self.errors:
            lines.append("  errors     " + "   ".join(f"{k} {v}" for k, v in sorted(self.errors.items())))
        if self.image_statuses:
            by_count = sorted(self.image_statuses.items(), key=lambda kv: -kv[1])
            lines.append("  images     " + "   ".join(f"{k.removeprefix('IMAGE_')} {v}" for k, v in by_count))
        return "\n".join(lines)

    def write_plot(self, path: Path | str, title: str | None = None) -> Path:
        """Latency of every request over time (log scale, with per-second p50 and p99), and
        completions per second below it."""
        ok = [r for r in self.records if r.code == "OK"]
        failed = [r for r in self.records if r.code != "OK"]
        # Past ~20k points the scatter is a solid band; a regular stride keeps its shape.
        stride = max(1, len(ok) // 20000)
        rows = self.timeline
        mid = [row["t"] + self.timeline_bin_s / 2 for row in rows]
        per = f"per {self.timeline_bin_s:g} s"
        latency = plot.Panel(
            "latency (ms, log scale)",
            log_y=True,
            series=[
                plot.Series(
                    [r.start_s for r in ok[::stride]],
                    [r.latency_s * 1000 for r in ok[::stride]],
                    plot.LIGHT_BLUE,
                    "request",
                    kind="scatter",
                    radius=1,
                ),
                plot.Series(
                    [r.start_s for r in failed],
                    [r.latency_s * 1000 for r in failed],
                    plot.RED,
                    "failed call",
                    kind="scatter",
                    radius=2,
                ),
                plot.Series(mid, [row["p50_ms"] for row in rows], plot.BLUE, f"p50 {per}"),
                plot.Series(mid, [row["p99_ms"] for row in rows], plot.ORANGE, f"p99 {per}"),
            ],
        )
        rates = [
            plot.Series(mid, [row["completed_rps"] for row in rows], plot.BLUE, "completed req/s"),
            plot.Series(mid, [row["ok_rps"] for row in rows], plot.GREEN, "OK req/s"),
        ]
        if self.images != self.requests:
            rates.append(plot.Series(mid, [row["images_per_s"] for row in rows], plot.PURPLE, "images/s"))
        if self.mode == "open":
            rates.append(plot.Series(mid, [row["sent_rps"] for row in rows], plot.GREY, "sent req/s"))
        throughput = plot.Panel(f"rates, per second (in {self.timeline_bin_s:g} s bins)", series=rates, y_min=0)
        if self.warmup_s > 0:
            latency.shade = throughput.shade = [(0.0, self.warmup_s, "warm-up")]
        end = max([self.elapsed_s, *(r.end_s for r in self.records)])
        lat = self.latency_ms
        heading = title or f"{self.target}: {self.describe()}"
        heading += (
            f"  |  {self.ok_rps:.0f} req/s, {self.images_per_s:.0f} img/s, "
            f"p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms"
        )
        return plot.render(
            path,
            [latency, throughput],
            title=heading,
            xlabel="seconds since start",
            x_range=(0.0, max(1.0, math.ceil(end))),
        )


def summarize(
    records: Sequence[RequestRecord],
    *,
    target: str = "",
    mode: str = "closed",
    concurrency: int | None = None,
    rate: float | None = None,
    arrivals: str | None = None,
    channels: int = 1,
    warmup_s: float = 0.0,
    duration_s: float = 0.0,
    send_stop_s: float | None = None,
    elapsed_s: float | None = None,
    max_outstanding: int = 0,
    max_outstanding_limit: int | None = None,
    skipped: int = 0,
    started_at: str | None = None,
    keep_records: bool = True,
) -> LoadReport:
    """Builds the report from raw records (also usable on records from elsewhere, e.g. tests)."""
    ends = [r.end_s for r in records]
    last_end = max(ends, default=0.0)
    send_stop_s = send_stop_s if send_stop_s is not None else max((r.start_s for r in records), default=0.0)
    elapsed_s = elapsed_s if elapsed_s is not None else last_end
    measured = [r for r in records if warmup_s <= r.start_s <= send_stop_s]
    window_s = max(send_stop_s - warmup_s, 1e-9)
    in_window = [r for r in records if warmup_s <= r.end_s <= send_stop_s]
    ok_in_window = [r for r in in_window if r.code == "OK"]
    ok = [r for r in measured if r.code == "OK"]
    bin_s = timeline_bin(max(elapsed_s, last_end), len(records))
    image_statuses: Counter[str] = Counter()
    for r in ok:
        image_statuses.update(r.image_statuses)
    return LoadReport(
        target=target,
        mode=mode,
        concurrency=concurrency,
        rate=rate,
        arrivals=arrivals,
        channels=channels,
        warmup_s=warmup_s,
        duration_s=duration_s,
        window_s=window_s,
        elapsed_s=elapsed_s,
        requests=len(measured),
        ok=len(ok),
        images=sum(r.images for r in measured),
        throughput_rps=len(in_window) / window_s,
        ok_rps=len(ok_in_window) / window_s,
        images_per_s=sum(r.images for r in ok_in_window) / window_s,
        send_rate_rps=len(measured) / window_s,
        latency_ms=latency_summary([r.latency_s for r in ok]),
        latency_all_ms=latency_summary([r.latency_s for r in measured]),
        schedule_lag_ms=latency_summary([r.lag_s for r in measured]) if mode == "open" else None,
        errors=dict(Counter(r.code for r in measured if r.code != "OK")),
        image_statuses=dict(image_statuses),
        max_outstanding=max_outstanding,
        max_outstanding_limit=max_outstanding_limit,
        skipped=skipped,
        warmup_requests=sum(1 for r in records if r.start_s < warmup_s),
        timeline=_timeline(records, max(elapsed_s, last_end), bin_s),
        timeline_bin_s=bin_s,
        started_at=started_at or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine=machine_info(),
        records=list(records) if keep_records else [],
    )


_BIN_WIDTHS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def timeline_bin(span_s: float, count: int, per_bin: int = 25, min_bins: int = 10, max_bins: int = 300) -> float:
    """The narrowest round bin width that holds about `per_bin` requests on average, so that a
    bin's p99 is more than its one slowest call, and no more than max_bins bins; but never so
    wide that the run has fewer than min_bins bins: a short burst must still show."""
    span_s = max(span_s, 1e-9)
    width = next((w for w in _BIN_WIDTHS if count * w / span_s >= per_bin and span_s / w <= max_bins), _BIN_WIDTHS[-1])
    while width > _BIN_WIDTHS[0] and span_s / width < min_bins:
        width = _BIN_WIDTHS[_BIN_WIDTHS.index(width) - 1]
    return width


def _timeline(records: Sequence[RequestRecord], end_s: float, bin_s: float) -> list[dict[str, float]]:
    """One row per bin: calls sent and completed in it (by start and end time) as rates per
    second, and the latency percentiles of the OK calls that started in it."""
    n = max(1, math.ceil(end_s / bin_s))
    sent, completed, ok_done, images = [0] * n, [0] * n, [0] * n, [0] * n
    started_latencies: list[list[float]] = [[] for _ in range(n)]
    for r in records:
        s = min(n - 1, int(r.start_s / bin_s))
        e = min(n - 1, int(r.end_s / bin_s))
        sent[s] += 1
        completed[e] += 1
        if r.code == "OK":
            ok_done[e] += 1
            images[e] += r.images
            started_latencies[s].append(r.latency_s)
    rows = []
    for i in range(n):
        lat = sorted(started_latencies[i])
        rows.append(
            {
                "t": round(i * bin_s, 6),
                "sent_rps": sent[i] / bin_s,
                "completed_rps": completed[i] / bin_s,
                "ok_rps": ok_done[i] / bin_s,
                "images_per_s": images[i] / bin_s,
                "p50_ms": percentile(lat, 50) * 1000 if lat else math.nan,
                "p99_ms": percentile(lat, 99) * 1000 if lat else math.nan,
            }
        )
    return rows


def _json_safe(value: Any) -> Any:
    # JSON has no NaN; null says "no data" (e.g. no OK call to take a percentile of).
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --- the generator ----------------------------------------------------------------------------


def make_channels(target: str, count: int, options: Sequence[tuple[str, Any]] | None = None) -> list[aio.Channel]:
    """`count` channels to `target`, each guaranteed its own TCP connection.

    gRPC shares subchannels (connections) between channels whose arguments are equal, through
    a process-wide pool, so N identical channels would quietly be one connection. A local
    subchannel pool per channel, plus an argument that differs per channel, keeps them apart."""
    base = list(options if options is not None else recommended_channel_options())
    return [
        aio.insecure_channel(
            target, options=[*base, ("grpc.use_local_subchannel_pool", 1), ("loadtest.channel_index", i)]
        )
        for i in range(count)
    ]


class _Run:
    def __init__(
        self,
        target: str,
        factory: RequestFactory,
        *,
        channels: int,
        warmup_s: float,
        duration_s: float,
        max_requests: int | None,
        timeout_s: float,
        metadata: Sequence[tuple[str, str]] | None,
        stop: asyncio.Event | None,
        options: Sequence[tuple[str, Any]] | None,
        method: Method = CLASSIFY,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        self.target = target
        self.factory = factory
        self.method = method
        self.channels = list((channel_factory or make_channels)(target, channels, options))
        self.calls = [
            ch.unary_unary(
                method.path,
                request_serializer=method.request_serializer,
                response_deserializer=method.response_deserializer,
            )
            for ch in self.channels
        ]
        self.raw_calls: list[Any] = []  # for Serialized requests, made on the first one
        self.end_s = warmup_s + duration_s
        self.max_requests = max_requests if max_requests is not None else math.inf
        self.timeout_s = timeout_s
        self.metadata = tuple(metadata) if metadata else None
        self.stop = stop or asyncio.Event()
        self.records: list[RequestRecord] = []
        self.issued = 0
        self.outstanding = 0
        self.max_outstanding = 0
        self.skipped = 0
        self.send_stop_s: float | None = None
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def sending_done(self) -> bool:
        done = self.stop.is_set() or self.issued >= self.max_requests or self.now() >= self.end_s
        if done and self.send_stop_s is None:
            self.send_stop_s = min(self.now(), self.end_s)
        return done

    async def connect(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in self.channels)), timeout_s)
        except TimeoutError:
            raise ConnectionError(f"no gRPC connection to {self.target} within {timeout_s:g} s") from None

    def claim(self) -> int:
        """Takes the next sequence number and counts the call as in flight. Counted here, when
        the call is decided, not when its task first runs: a burst of arrivals creates many
        tasks before any of them starts, and the cap must see all of them."""
        seq = self.issued
        self.issued += 1
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        return seq

    async def call(self, seq: int, due_s: float | None = None) -> None:
        """One call; claim() must have counted it. due_s: its scheduled start (open loop)."""
        index = seq % len(self.channels)
        try:
            request = self.factory(seq)
        except BaseException:
            self.outstanding -= 1
            raise
        if isinstance(request, Serialized):
            if not self.raw_calls:
                self.raw_calls = [
                    ch.unary_unary(
                        self.method.path,
                        request_serializer=_as_is,
                        response_deserializer=self.method.response_deserializer,
                    )
                    for ch in self.channels
                ]
            invoke, images, request = self.raw_calls[index], request.images, request.payload
        else:
            invoke, images = self.calls[index], self.method.images(request)
        start = time.perf_counter()
        code, statuses = "OK", ()
        try:
            response = await invoke(request, timeout=self.timeout_s, metadata=self.metadata)
            statuses = self.method.statuses(response)
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
        except CallFailed as exc:
            code = exc.code
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:  # a bug or resource problem on this side, not the server's answer
            code = f"CLIENT_{type(exc).__name__}"
        finally:
            end = time.perf_counter()
            self.outstanding -= 1
            lag = max(0.0, start - self.t0 - due_s) if due_s is not None else 0.0
            self.records.append(RequestRecord(seq, index, start - self.t0, end - start, code, images, statuses, lag))

    async def closed_loop(self, concurrency: int) -> None:
        async def worker() -> None:
            while not self.sending_done():
                await self.call(self.claim())

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def open_loop(self, rate: Callable[[float], float], arrivals: str, max_outstanding: int, seed: int) -> None:
        rng = random.Random(seed)
        tasks: set[asyncio.Task] = set()
        due = 0.0
        while not self.sending_done():
            wait = due - self.now()
            if wait > 0:
                # Woken early by stop; otherwise sleeps to the arrival. A late wake-up is made
                # good by sending at once (the schedule is absolute), not by shifting it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
                if self.sending_done() or due >= self.end_s:
                    break
            if self.outstanding >= max_outstanding:
                self.skipped += 1
            else:
                task = asyncio.create_task(self.call(self.claim(), due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            current = rate(due)
            if current <= 0:
                due += 0.01  # a paused phase: look again shortly
            else:
                due += rng.expovariate(current) if arrivals == "poisson" else 1.0 / current
        await self.drain(tasks)

    async def drain(self, tasks: set[asyncio.Task]) -> None:
        if not tasks:
            return
        # Calls carry their own deadline, so they all end within timeout_s; the margin covers
        # the retry backoff of the service config.
        _, pending = await asyncio.wait(set(tasks), timeout=self.timeout_s + 5.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def progress(self, callback: ProgressCallback, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            done = len(self.records)
            callback(
                {
                    "elapsed_s": self.now(),
                    "sent": self.issued,
                    "completed": done,
                    "failed": sum(1 for r in self.records if r.code != "OK"),
                    "outstanding": self.outstanding,
                    "skipped": self.skipped,
                }
            )

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch in self.channels), return_exceptions=True)


def constant_rate(rate: float) -> Callable[[float], float]:
    return lambda _t: rate


def phased_rate(phases: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """A rate that cycles through (seconds, requests/s) phases, e.g. [(4, 20), (2, 100)]."""
    period = sum(length for length, _ in phases)
    if period <= 0:
        raise ValueError("phases must have a positive total length")

    def rate(t: float) -> float:
        offset = t % period
        for length, value in phases:
            if offset < length:
                return value
            offset -= length
        return phases[-1][1]

    return rate


def mean_rate(rate: Callable[[float], float], start_s: float, end_s: float, step_s: float = 0.01) -> float:
    steps = max(1, int((end_s - start_s) / step_s))
    return sum(rate(start_s + (i + 0.5) * step_s) for i in range(steps)) / steps


async def run_load(
    target: str,
    *,
    requests_factory: RequestFactory,
    concurrency: int = 8,
    channels: int = 1,
    duration_s: float = 10.0,
    max_requests: int | None = None,
    warmup_s: float = 0.0,
    rate: Rate | None = None,
    arrivals: str = "poisson",
    max_outstanding: int | None = None,
    timeout_s: float = 30.0,
    seed: int = 0,
    metadata: Sequence[tuple[str, str]] | None = None,
    channel_options: Sequence[tuple[str, Any]] | None = None,
    connect_timeout_s: float = 10.0,
    stop: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every_s: float = 1.0,
    keep_records: bool = True,
    method: Method = CLASSIFY,
    channel_factory: ChannelFactory | None = None,
) -> LoadReport:
    """Runs one load test and returns its report.

    requests_factory(seq) builds the request for the seq-th call (0-based, warm-up included).
    rate=None: closed loop with `concurrency` workers. rate=R (req/s) or a function of seconds
    since start: open loop, with at most `max_outstanding` calls in flight (default: 4 x
    concurrency, at least 64). max_requests bounds the calls sent, warm-up included; the run
    also ends after warmup_s + duration_s or when `stop` is set, whichever comes first.
    channel_options replace server.api.client's recommended options (the per-channel arguments
    that keep connections apart are always added). method: the call to make (default: Classify,
    and requests_factory must build that method's requests); channel_factory: how channels are
    opened (default: make_channels, grpc.aio)."""
    if concurrency < 1 or channels < 1:
        raise ValueError("concurrency and channels must be at least 1")
    if arrivals not in ("poisson", "uniform"):
        raise ValueError(f"arrivals must be 'poisson' or 'uniform', not {arrivals!r}")
    run = _Run(
        target,
        requests_factory,
        channels=channels,
        warmup_s=warmup_s,
        duration_s=duration_s,
        max_requests=max_requests,
        timeout_s=timeout_s,
        metadata=metadata,
        stop=stop,
        options=channel_options,
        method=method,
        channel_factory=channel_factory,
    )
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    ticker: asyncio.Task | None = None
    try:
        await run.connect(connect_timeout_s)
        run.t0 = time.perf_counter()
        if on_progress is not None:
            ticker = asyncio.create_task(run.progress(on_progress, progress_every_s))
        if rate is None:
            await run.closed_loop(concurrency)
            limit, mean = None, None
        else:
            rate_fn = rate if callable(rate) else constant_rate(float(rate))
            limit = max_outstanding if max_outstanding is not None else max(64, 4 * concurrency)
            await run.open_loop(rate_fn, arrivals, limit, seed)
            mean = mean_rate(rate_fn, warmup_s, warmup_s + duration_s)
        elapsed = run.now()
    finally:
        if ticker is not None:
            ticker.cancel()
        await run.close()
    run.sending_done()  # pins send_stop_s when nothing was ever sent
    return summarize(
        sorted(run.records, key=lambda r: r.seq),
        target=target,
        mode="closed" if rate is None else "open",
        concurrency=concurrency if rate is None else None,
        rate=mean,
        arrivals=arrivals if rate is not None else None,
        channels=channels,
        warmup_s=warmup_s,
        duration_s=duration_s,
        send_stop_s=run.send_stop_s,
        elapsed_s=elapsed,
        max_outstanding=run.max_outstanding,
        max_outstanding_limit=limit,
        skipped=run.skipped,
        started_at=started_at,
        keep_records=keep_records,
    )


# --- saturation -------------------------------------------------------------------------------


@dataclass
class SaturationStep:
    concurrency: int
    throughput_rps: float
    ok_rps: float
    images_per_s: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    requests: int


@dataclass
class SaturationResult:
    steps: list[SaturationStep]
    best: SaturationStep  # the step with the highest OK throughput
    # The lowest concurrency reaching 95% of the best OK throughput: where adding calls in
    # flight stops buying throughput and only adds queueing delay.
    knee: SaturationStep
    channels: int
    reports: list[LoadReport] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "channels": self.channels,
                "best": asdict(self.best),
                "knee": asdict(self.knee),
                "steps": [asdict(s) for s in self.steps],
                "machine": self.reports[0].machine if self.reports else machine_info(),
            }
        )

    def write_json(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def table(self) -> str:
        lines = [
            f"{'concurrency':>11} {'req/s':>8} {'ok req/s':>8} {'img/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8}  errors"
        ]
        for s in self.steps:
            errors = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "-"
            mark = "  <- best" if s is self.best else ("  <- knee" if s is self.knee else "")
            lines.append(
                f"{s.concurrency:>11} {s.throughput_rps:>8.1f} {s.ok_rps:>8.1f} {s.images_per_s:>8.1f} "
                f"{s.latency_ms['p50']:>8.1f} {s.latency_ms['p95']:>8.1f} {s.latency_ms['p99']:>8.1f}  "
                f"{errors}{mark}"
            )
        return "\n".join(lines)

    def write_plot(self, path: Path | str, title: str | None = None) -> Path:
        xs = [s.concurrency for s in self.steps]
        throughput = plot.Panel(
            "throughput per second",
            y_min=0,
            series=[plot.Series(xs, [s.ok_rps for s in self.steps], plot.BLUE, "OK req/s", kind="markers")],
        )
        if any(abs(s.images_per_s - s.ok_rps) > 1e-9 for s in self.steps):
            throughput.series.append(
                plot.Series(xs, [s.images_per_s for s in self.steps], plot.PURPLE, "images/s", kind="markers")
            )
        latency = plot.Panel(
            "latency (ms, log scale)",
            log_y=True,
            series=[
                plot.Series(xs, [s.latency_ms["p50"] for s in self.steps], plot.BLUE, "p50", kind="markers"),
                plot.Series(xs, [s.latency_ms["p95"] for s in self.steps], plot.GREEN, "p95", kind="markers"),
                plot.Series(xs, [s.latency_ms["p99"] for s in self.steps], plot.ORANGE, "p99", kind="markers"),
            ],
        )
        heading = title or (
            f"saturation, {self.channels} channel{'s' if self.channels != 1 else ''}: best "
            f"{self.best.ok_rps:.0f} req/s at concurrency {self.best.concurrency}"
        )
        lo, hi = min(xs), max(xs)
        return plot.render(
            path,
            [throughput, latency],
            title=heading,
            xlabel="concurrency (calls in flight)",
            log_x=hi > lo,
            x_ticks=xs,
            x_range=(lo / 1.3, hi * 1.3) if hi > lo else (lo - 1, hi + 1),
        )


async def find_saturation(
    target: str,
    *,
    requests_factory: RequestFactory,
    levels: Sequence[int] = (1, 2, 4, 8, 16, 32),
    step_duration_s: float = 10.0,
    warmup_s: float = 2.0,
    channels: int = 1,
    max_requests_per_step: int | None = None,
    stop_after_decline: int | None = None,
    max_error_rate: float = 0.5,
    on_step: Callable[[SaturationStep], Awaitable[None] | None] | None = None,
    **run_kwargs: Any,
) -> SaturationResult:
    """Closed-loop runs at each concurrency in `levels`; returns every step, the best OK
    throughput and the knee. Stops early after `stop_after_decline` consecutive steps below the
    best (None: never), or once more than max_error_rate of the calls fail: past saturation,
    more load only measures the server's queue. run_kwargs go to run_load."""
    steps: list[SaturationStep] = []
    reports: list[LoadReport] = []
    declines = 0
    for level in levels:
        report = await run_load(
            target,
            requests_factory=requests_factory,
            concurrency=level,
            channels=channels,
            duration_s=step_duration_s,
            warmup_s=warmup_s,
            max_requests=max_requests_per_step,
            **run_kwargs,
        )
        step = SaturationStep(
            level,
            report.throughput_rps,
            report.ok_rps,
            report.images_per_s,
            report.latency_ms,
            report.errors,
            report.requests,
        )
        best_so_far = max((s.ok_rps for s in steps), default=0.0)
        steps.append(step)
        reports.append(report)
        if on_step is not None:
            maybe = on_step(step)
            if asyncio.iscoroutine(maybe):
                await maybe
        declines = declines + 1 if steps[:-1] and step.ok_rps < best_so_far else 0
        if stop_after_decline is not None and declines >= stop_after_decline:
            break
        if report.error_rate > max_error_rate:
            break
    best = max(steps, key=lambda s: s.ok_rps)
    knee = next(s for s in steps if s.ok_rps >= 0.95 * best.ok_rps)
    return SaturationResult(steps, best, knee, channels, reports)
