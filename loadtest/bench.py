"""`make bench`: every serving-speed figure the README shows, measured side by side in one run
on this machine, printed as ratios, written to var/bench/ and into the README.

1. The CPU: fp32 peak measured with an FMA loop (loadtest/fma_peak.c, one copy per core at
   once), a numpy sgemm for comparison, and the model's FLOP per image, counted from the ONNX
   graph.
2. The raw engine: single-thread throughput at the served batch sizes, then one
   single-threaded engine per core in separate processes.
3. The CPU floor per image: single-thread decode of the benchmark photos + single-thread
   inference + the server CPU of one empty RPC; floor = cores / that sum.
4. The server on inline JPEG bytes, on URLs from a loopback image host, with batching off, and
   the naive path (Keras predict per call, no batching), by the same load generator; single
   channel and 8 channels; a 4-image post's latency at half of saturation, beside what an
   ideal queue with no overhead would give at the same rate (loadtest.queue_model); RSS and
   start time.

The load generator runs on the same 2 cores as the server (there is nowhere else to run it),
so every server figure is a little pessimistic; its CPU use is reported beside them. It sends
requests serialised once (loadtest.generator.prepared): building a message around a 176 KB
photo and serialising it cost ~0.14 ms a call, taken from the server's cores."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.generator import find_saturation, prepared, run_load
from loadtest.image_host import ImageHost
from loadtest.images import ensure_images
from loadtest.queue_model import ideal_post_latency
from model.repository import latest_version_dir, load_metadata
from moderation_api.v1 import moderation_pb2 as pb

FMA_SOURCE = Path(__file__).with_name("fma_peak.c")
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


# --- the CPU -----------------------------------------------------------------------------------


def cpu_info() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", text)
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
    flags = set((re.search(r"flags\s*:\s*(.+)", text) or [None, ""])[1].split())
    cores = len(os.sched_getaffinity(0))
    ghz = (max(mhz) if mhz else 0.0) / 1000
    return {
        "model": model.group(1).strip() if model else platform.processor(),
        "cores": cores,
        "ghz": round(ghz, 3),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "fma": "fma" in flags,
    }


def fma_peak_gflops(
    out_dir: Path, cores: int, avx512: bool, seconds: float = 2.0, repeats: int = 3
) -> dict[str, float]:
    """Sum over cores of the FMA loop's GFLOP/s, all cores running at once (so any clock drop
    under all-core load is counted), the best of `repeats` runs: on a shared virtual machine a
    neighbour's load only ever lowers it, and a low peak would flatter every share of it. The
    widest vector unit that is faster wins."""
    binary = out_dir / "fma_peak"
    subprocess.run(["gcc", "-O3", "-funroll-loops", "-o", str(binary), str(FMA_SOURCE)], check=True)
    result: dict[str, float] = {}
    for _ in range(repeats):
        for isa in ("avx2", "avx512") if avx512 else ("avx2",):
            procs = [
                subprocess.Popen([str(binary), isa, str(seconds)], stdout=subprocess.PIPE, text=True)
                for _ in range(cores)
            ]
            result[isa] = max(result.get(isa, 0.0), round(sum(float(p.communicate()[0]) for p in procs), 1))
    return result


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    started = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def model_flops(onnx_file: Path) -> float:
    """FLOP per image of the convolutions and dense layers (2 per multiply-add)."""
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_file)))
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)
    }
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    total = 0.0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out, kernel = shapes[node.output[0]], weights[node.input[1]]  # out NCHW, kernel OIHW
            total += 2 * out[1] * out[2] * out[3] * kernel[1] * kernel[2] * kernel[3]
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in weights:
            w = weights[node.input[1]]
            total += 2 * w[0] * w[1]
    return total


# --- the raw engine ----------------------------------------------------------------------------


def _session(onnx_file: str, threads: int):
    from server.serving.engines.onnx_engine import OnnxEngine

    return OnnxEngine(onnx_file, threads=threads)


def engine_images_per_s(onnx_file: str, size: int, batch: int, threads: int = 1, seconds: float = 3.0) -> float:
    engine = _session(onnx_file, threads)
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    engine.predict(images)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        engine.predict(images)
        done += batch
    return done / (time.perf_counter() - started)


def _engine_worker(args: tuple[str, int, int, float]) -> float:
    return engine_images_per_s(*args)


def engine_processes_images_per_s(onnx_file: str, size: int, batch: int, processes: int, seconds: float) -> float:
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(_engine_worker, [(onnx_file, size, batch, 1, seconds)] * processes))


def decode_ms(photos: list[bytes], size: int, seconds: float = 3.0) -> float:
    from model.preprocess import decode_image

    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        decode_image(photos[done % len(photos)], (size, size))
        done += 1
    return (time.perf_counter() - started) / done * 1000


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


class ServerProcess:
    """`python -m server.main` with the given flags, on free ports, until stop()."""

    def __init__(self, repo: Path, extra: list[str], workdir: Path, allow: str = ""):
        self.port = free_port()
        self.workdir = workdir
        args = [
            sys.executable,
            "-m",
            "server.main",
            "--model-repository",
            str(repo),
            "--server-port",
            str(self.port),
            "--server-metrics-port",
            "-1",
            "--audit-url",
            f"sqlite:///{workdir}/audit.sqlite3",
            "--model-poll-interval-s",
            "0",
            "--server-drain-delay-s",
            "0",
            "--log-level",
            "WARNING",
            *extra,
        ]
        if allow:
            args += ["--fetch-allow", allow]
        self.log = open(workdir / f"server-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.serving_s = self._wait_serving()
        except BaseException:
            self.stop()
            raise

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_serving(self, timeout: float = 180.0) -> float:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: see {self.log.name}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return time.perf_counter() - self.started
                except grpc.RpcError:
                    pass
                time.sleep(0.02)
        raise TimeoutError("server never became SERVING")

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def rss(self) -> dict[str, float]:
        pids = self.pids()
        return {
            "front_mb": round(rss_mb(pids[0]), 1),
            "workers_mb": [round(rss_mb(p), 1) for p in pids[1:]],
            "total_mb": round(sum(rss_mb(p) for p in pids), 1),
        }

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --- loads -------------------------------------------------------------------------------------


def inline_requests(photos: list[bytes], per_request: int = 1):
    """The seq-th request holds the next `per_request` photos, prepared once (they repeat every
    len(photos) calls)."""

    def make(seq: int) -> pb.ClassifyRequest:
        return pb.ClassifyRequest(
            post_id=f"bench-{seq % len(photos)}",
            images=[
                pb.ImageInput(id=str(i), content=photos[(seq * per_request + i) % len(photos)])
                for i in range(per_request)
            ],
        )

    return prepared(make, len(photos))


def url_requests(urls: list[str]):
    def make(seq: int) -> pb.ClassifyRequest:
        return pb.ClassifyRequest(post_id=f"bench-{seq}", images=[pb.ImageInput(id="0", url=urls[seq % len(urls)])])

    return make


def saturate(target: str, factory, channels: int, levels: tuple[int, ...], step_s: float) -> dict[str, Any]:
    own = os.times()
    result = asyncio.run(
        find_saturation(
            target,
            requests_factory=factory,
            levels=levels,
            step_duration_s=step_s,
            warmup_s=1.0,
            channels=channels,
            stop_after_decline=2,
        )
    )
    spent = os.times()
    wall = sum(r.elapsed_s for r in result.reports)
    best = result.best
    return {
        "channels": channels,
        "best_images_per_s": round(best.images_per_s, 1),
        "best_concurrency": best.concurrency,
        "p50_ms": round(best.latency_ms["p50"], 1),
        "p99_ms": round(best.latency_ms["p99"], 1),
        "errors": best.errors,
        "steps": [
            {
                "concurrency": s.concurrency,
                "images_per_s": round(s.images_per_s, 1),
                "p50_ms": round(s.latency_ms["p50"], 1),
                "p99_ms": round(s.latency_ms["p99"], 1),
            }
            for s in result.steps
        ],
        "generator_cpu_share": round((spent.user + spent.system - own.user - own.system) / wall, 2),
    }


def fixed_load(
    target: str, factory, concurrency: int, seconds: float, channels: int = 1, rate: float | None = None
) -> dict[str, Any]:
    return load_summary(fixed_load_report(target, factory, concurrency, seconds, channels, rate))


def fixed_load_report(
    target: str, factory, concurrency: int, seconds: float, channels: int = 1, rate: float | None = None
):
    return asyncio.run(
        run_load(
            target,
            requests_factory=factory,
            concurrency=concurrency,
            channels=channels,
            duration_s=seconds,
            warmup_s=1.0,
            rate=rate,
            arrivals="poisson",
            keep_records=False,
        )
    )


def load_summary(report) -> dict[str, Any]:
    return {
        "images_per_s": round(report.images_per_s, 1),
        "requests_per_s": round(report.ok_rps, 1),
        "p50_ms": round(report.latency_ms["p50"], 1),
        "p99_ms": round(report.latency_ms["p99"], 1),
        "errors": report.errors,
        "requests": report.requests,
    }


def post4_half_load(
    server: ServerProcess,
    photos: list[bytes],
    saturation_images_per_s: float,
    seconds: float,
    workers: int,
    warm_image_ms: float,
) -> dict[str, Any]:
    """4-image posts, Poisson arrivals, at half the image throughput of saturation. Its p99 rests
    on the slowest 1% of posts, so it runs long enough for that to be a score of posts.

    Beside it, what an ideal queue (loadtest.queue_model: no overhead, FIFO over the workers)
    gives at the same rate, once with the worker CPU per image measured during this load and
    once with the back-to-back decode + inference time of the floor: the first separates the
    server's own overhead from queueing, the second shows what idle cores' slower work costs."""
    rate = saturation_images_per_s / 2 / 4
    pids = server.pids()  # the front, then its children: workers and the (idle) resource tracker
    before = [cpu_seconds(p) for p in pids]
    report = fixed_load_report(server.target, inline_requests(photos, 4), 64, seconds, rate=rate)
    spent = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    images = report.images + 4 * report.warmup_requests  # the CPU was counted over the warm-up too
    result = {
        **load_summary(report),
        "rate_posts_per_s": round(rate, 1),
        "front_cpu_ms_per_image": round(spent[0] / images * 1000, 2),
        "workers_cpu_ms_per_image": round(sum(spent[1:]) / images * 1000, 2),
    }
    for name, image_ms in (("ideal_at_measured", result["workers_cpu_ms_per_image"]), ("ideal_at_warm", warm_image_ms)):
        ideal = ideal_post_latency(rate, 4, image_ms / 1000, workers)
        result[name] = {
            "image_ms": round(image_ms, 2),
            "p50_ms": ideal.p50_ms,
            "p99_ms": ideal.p99_ms,
            "utilisation": ideal.utilisation,
        }
    return result


def empty_rpc_cpu_ms(payload: bytes, calls: int = 2000) -> dict[str, float]:
    """Server CPU per call of a Classify handler that does nothing, sync vs grpc.aio, with one
    benchmark photo as the payload (so deserialising it is counted)."""
    out = {}
    request = pb.ClassifyRequest(post_id="x", images=[pb.ImageInput(id="0", content=payload)])

    def factory(_seq: int) -> pb.ClassifyRequest:
        return request

    for kind in ("sync", "aio"):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "loadtest.echo_server", kind, str(port)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            fixed_load(f"127.0.0.1:{port}", factory, concurrency=8, seconds=1.0)  # warm
            before = cpu_seconds(proc.pid)
            report = asyncio.run(
                run_load(
                    f"127.0.0.1:{port}",
                    requests_factory=factory,
                    concurrency=8,
                    max_requests=calls,
                    duration_s=60,
                    keep_records=False,
                )
            )
            out[kind] = round((cpu_seconds(proc.pid) - before) / report.requests * 1000, 3)
        finally:
            proc.terminate()
            proc.wait(10)
    return out


# --- the run -----------------------------------------------------------------------------------


def text_image(index: int) -> bytes:
    """A text-bearing image from the model benchmark's held-out generator: personal data and
    its hard negatives by turns (cards, labels, chats, menus, receipts, timetables ...)."""
    from training import benchmark_data

    label = "personal_info" if index % 2 == 0 else "ham"
    for k in range(index, index + 400):
        data, _, variant = benchmark_data.generate(11, label, k, 400)
        if variant not in ("standard", "photo"):
            return data
    raise RuntimeError("the benchmark generator gave no text-bearing image")


def mixed_requests(photos: list[bytes], texts: list[bytes], text_every: int = 5):
    """One image per call; every `text_every`-th a text-bearing one (5: an 80/20 mix)."""

    def make(seq: int) -> pb.ClassifyRequest:
        if seq % text_every == text_every - 1:
            data = texts[(seq // text_every) % len(texts)]
        else:
            data = photos[seq % len(photos)]
        return pb.ClassifyRequest(post_id=f"bench-{seq}", images=[pb.ImageInput(id="0", content=data)])

    return prepared(make, len(photos) * len(texts))


def classify_all(target: str, images: list[bytes], repeats: int, concurrency: int = 8) -> list[Any]:
    """Each image `repeats` times, `concurrency` calls in flight; the responses."""
    import concurrent.futures

    import grpc

    from moderation_api.v1 import moderation_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ModerationStub(channel)
        requests = [
            pb.ClassifyRequest(post_id=f"cpu-{i}", images=[pb.ImageInput(id="0", content=images[i % len(images)])])
            for i in range(len(images) * repeats)
        ]
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda r: stub.Classify(r, timeout=60), requests))


def cpu_ms_per_image(server: ServerProcess, images: list[bytes], repeats: int) -> tuple[float, list[Any]]:
    """Server CPU (front process and workers) per image over len(images) * repeats calls."""
    classify_all(server.target, images[:4], 1)  # warm: first calls pay lazy set-up
    before = server.cpu()
    responses = classify_all(server.target, images, repeats)
    return 1000 * (server.cpu() - before) / len(responses), responses


def reader_parts(photos: list[bytes], texts: list[bytes]) -> dict[str, Any]:
    """CPU of the reader's parts in this process, one thread: the gate's looks at each size,
    detection at two sizes, recognition per line by batch size. What ReaderConfig's defaults
    were chosen on."""
    import dataclasses

    from rapidocr.utils.process_img import get_rotate_crop_image

    from model.preprocess import decode_for_reading, decode_image
    from model.reader.config import ReaderConfig
    from model.reader.ocr import OcrEngine

    engine = OcrEngine(ReaderConfig())
    engine.warm_up()
    small = [decode_image(d, (128, 128)) for d in photos]

    def per_item_ms(work, items) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for item in items:
                work(item)
            best = min(best, (time.process_time() - started) / len(items))
        return round(1000 * best, 2)

    out: dict[str, Any] = {
        f"gate_map_{side}_ms": per_item_ms(lambda x, side=side: engine._map(x, side), small) for side in (64, 96, 128)
    }
    out["gate_ms_per_photo"] = per_item_ms(engine.gate, small)
    full = [decode_for_reading(d, 960) for d in texts]
    for side in (640, 960):
        sized = OcrEngine(dataclasses.replace(ReaderConfig(), det_side=side))
        out[f"detect_{side}_ms_per_text_image"] = per_item_ms(sized.detect, full)
    crops = []
    for image in full:
        quads, _ = engine.detect(image)
        crops += [get_rotate_crop_image(image, q.copy()) for q in quads]
    crops.sort(key=lambda c: c.shape[1] / max(1, c.shape[0]))
    out["lines"] = len(crops)
    for batch in (1, 2, 8):
        chunks = [crops[i : i + batch] for i in range(0, len(crops), batch)]
        out[f"recognize_batch_{batch}_ms_per_line"] = round(per_item_ms(engine._recognize_batch, chunks) / batch, 2)
    return out


def reader_cost(repo: Path, work: Path, photos: list[bytes], texts: list[bytes], step: float, repeats: int) -> dict:
    """The text reader's cost, on and off in one run: CPU per photo without text and per
    text-bearing image, the share of each the gate sent to reading, and the 80/20 mix."""
    out: dict[str, Any] = {"photos": len(photos), "text_images": len(texts)}
    for label, extra in (("off", ["--reader-enabled", "false"]), ("on", [])):
        server = ServerProcess(repo, extra, work)
        try:
            photo_ms, photo_answers = cpu_ms_per_image(server, photos, repeats)
            text_ms, text_answers = cpu_ms_per_image(server, texts, repeats)
            entry: dict[str, Any] = {
                "start_to_serving_s": round(server.serving_s, 2),
                "photo_cpu_ms": round(photo_ms, 2),
                "text_cpu_ms": round(text_ms, 2),
                "mixed_1ch": saturate(server.target, mixed_requests(photos, texts), 1, (4, 8, 16, 32), step),
                "rss": server.rss(),
            }
            if label == "on":

                def read_share(answers: list[Any]) -> float:
                    read = [a.results[0].reading.status != pb.READING_SKIPPED for a in answers]
                    return round(sum(read) / max(1, len(read)), 3)

                entry["photos_read_share"] = read_share(photo_answers)
                entry["text_read_share"] = read_share(text_answers)
            out[label] = entry
        finally:
            server.stop()
    on, off = out["on"], out["off"]
    out["ratios"] = {
        "photo_cpu_on_vs_off": round(on["photo_cpu_ms"] / off["photo_cpu_ms"], 2),
        "mixed_on_vs_off": round(on["mixed_1ch"]["best_images_per_s"] / off["mixed_1ch"]["best_images_per_s"], 3),
    }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    repo = Path(args.models)
    version_dir = latest_version_dir(repo, args.name)
    if version_dir is None:
        raise SystemExit(f"no model under {repo}/{args.name}: run `make model` first")
    metadata = load_metadata(version_dir)
    size = metadata.input_size
    onnx = metadata.engines.onnx
    assert onnx is not None, f"{version_dir} has no ONNX model"
    onnx_file = str(version_dir / onnx.file)
    images = ensure_images(args.images)
    photos = images.bytes_of("photo")
    info = cpu_info()
    cores = info["cores"]
    step = args.step_s
    say = print
    say(f"bench: {info['model']}, {cores} cores, model {args.name} v{metadata.version} ({size}x{size})")

    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**info, "kernel": platform.release(), "python": platform.python_version()},
        "model": {"name": args.name, "version": metadata.version, "input_size": size},
    }
    flops = model_flops(Path(onnx_file))
    result["model"]["gflop_per_image"] = round(flops / 1e9, 3)
    fma = fma_peak_gflops(Path(args.out), cores, info["avx512f"])
    info["fma_gflops"] = fma
    info["peak_gflops"] = max(fma.values())
    info["peak_source"] = "measured: FMA loop on every core at once (loadtest/fma_peak.c)"
    result["machine"].update(info)
    result["sgemm_gflops"] = round(sgemm_gflops(), 1)
    say(
        f"  peak {info['peak_gflops']} GFLOP/s ({fma}); numpy sgemm {result['sgemm_gflops']}; "
        f"model {flops / 1e9:.3f} GFLOP/image"
    )

    engine = {
        f"batch_{b}_1thread": round(engine_images_per_s(onnx_file, size, b, 1, args.engine_s), 1) for b in (1, 8, 32)
    }
    best_batch = max((1, 8, 32), key=lambda b: engine[f"batch_{b}_1thread"])
    engine["best_batch"] = best_batch
    engine[f"{cores}_processes_x_1thread"] = round(
        engine_processes_images_per_s(onnx_file, size, best_batch, cores, args.engine_s), 1
    )
    engine[f"1_process_x_{cores}threads"] = round(
        engine_images_per_s(onnx_file, size, best_batch, cores, args.engine_s), 1
    )
    int8 = metadata.engines.onnx_int8
    int8_ok = int8 is not None and int8.accepted and (version_dir / int8.file).is_file()
    if int8 is not None and int8_ok:
        engine[f"int8_{cores}_processes_x_1thread"] = round(
            engine_processes_images_per_s(str(version_dir / int8.file), size, best_batch, cores, args.engine_s), 1
        )
    raw = max(engine[f"{cores}_processes_x_1thread"], engine[f"1_process_x_{cores}threads"])
    engine["raw_images_per_s"] = raw
    engine["share_of_peak"] = round(raw * flops / 1e9 / info["peak_gflops"], 3)
    result["engine"] = engine
    say(f"  engine: {engine}")

    rpc = empty_rpc_cpu_ms(photos[0])
    decode = decode_ms(photos, size, args.engine_s)
    infer_ms = 1000 / engine[f"batch_{best_batch}_1thread"]
    per_image = decode + infer_ms + rpc["sync"]
    floor = cores / per_image * 1000
    result["floor"] = {
        "decode_ms": round(decode, 2),
        "inference_ms": round(infer_ms, 2),
        "empty_rpc_ms": rpc,
        "per_image_ms": round(per_image, 2),
        "images_per_s": round(floor, 1),
        "photo_bytes_mean": int(np.mean([len(p) for p in photos])),
    }
    say(f"  floor: {result['floor']}")

    work = Path(tempfile.mkdtemp(prefix="bench-", dir=args.out))
    host = ImageHost(images).start()
    urls = [host.url(f.name) for f in images.of_kind("photo")]
    servers: dict[str, Any] = {}
    try:
        # Start time with a warm page cache: start once, stop, then measure a second start.
        ServerProcess(repo, [], work).stop()
        default = ServerProcess(repo, [], work, allow=host.allow_entry)
        try:
            servers["start_to_serving_s"] = round(default.serving_s, 2)
            servers["inline_1ch"] = saturate(default.target, inline_requests(photos), 1, (4, 8, 16, 32), step)
            say(f"  server inline, 1 channel: {servers['inline_1ch']['best_images_per_s']} img/s")
            servers["inline_8ch"] = saturate(default.target, inline_requests(photos), 8, (8, 16, 32), step)
            say(f"  server inline, 8 channels: {servers['inline_8ch']['best_images_per_s']} img/s")
            servers["url_1ch"] = saturate(default.target, url_requests(urls), 1, (8, 16, 32, 64), step)
            say(f"  server on URLs: {servers['url_1ch']['best_images_per_s']} img/s")
            servers["at_8_concurrent_1ch"] = fixed_load(default.target, inline_requests(photos), 8, step)
            servers["at_8_concurrent_8ch"] = fixed_load(default.target, inline_requests(photos), 8, step, channels=8)
            best = max(servers["inline_1ch"]["best_images_per_s"], servers["inline_8ch"]["best_images_per_s"])
            warm_image_ms = decode + infer_ms
            servers["post4_half_load"] = post4_half_load(default, photos, best, args.post_s, cores, warm_image_ms)
            servers["rss"] = default.rss()
            say(f"  4-image posts at half load: {servers['post4_half_load']}; rss {servers['rss']}")
        finally:
            default.stop()
        if int8_ok:
            quantized = ServerProcess(repo, ["--model-engine", "onnx_int8"], work)
            try:
                servers["int8_inline_1ch"] = saturate(
                    quantized.target, inline_requests(photos), 1, (4, 8, 16, 32), step
                )
                int8_infer_ms = 1000 * cores / engine[f"int8_{cores}_processes_x_1thread"]  # per image, per core
                servers["int8_post4_half_load"] = post4_half_load(
                    quantized,
                    photos,
                    servers["int8_inline_1ch"]["best_images_per_s"],
                    args.post_s,
                    cores,
                    decode + int8_infer_ms,
                )
                say(
                    f"  int8: {servers['int8_inline_1ch']['best_images_per_s']} img/s; 4-image posts at half load: "
                    f"{servers['int8_post4_half_load']}"
                )
            finally:
                quantized.stop()
        else:
            say("  int8: not measured: the version has no accepted int8 model (make quantize)")
        texts = images.bytes_of("screenshot") + [text_image(i) for i in range(8)]
        servers["reader"] = reader_cost(repo, work, photos, texts, step, args.reader_repeats)
        servers["reader"]["parts"] = reader_parts(photos, texts)
        say(f"  reader: {servers['reader']}")
        unbatched = ServerProcess(repo, ["--batch-max-batch-size", "1"], work)
        try:
            servers["batching_off"] = saturate(unbatched.target, inline_requests(photos), 1, (4, 8, 16), step)
            say(f"  batching off: {servers['batching_off']['best_images_per_s']} img/s")
        finally:
            unbatched.stop()
        naive = ServerProcess(
            repo,
            [
                "--model-engine",
                "loadtest.keras_engine:open_keras_engine",
                "--model-runner",
                "thread",
                "--model-workers",
                "1",
                "--model-threads",
                "0",
                "--batch-max-batch-size",
                "1",
            ],
            work,
        )
        try:
            servers["naive_keras"] = fixed_load(naive.target, inline_requests(photos), 8, step)
            servers["naive_keras"]["rss_mb"] = naive.rss()["total_mb"]
            say(f"  naive Keras predict: {servers['naive_keras']['images_per_s']} img/s")
        finally:
            naive.stop()
    finally:
        host.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["server"] = servers
    best_inline = max(servers["inline_1ch"]["best_images_per_s"], servers["inline_8ch"]["best_images_per_s"])
    post = servers["post4_half_load"]
    result["ratios"] = {
        "server_inline_vs_floor": round(best_inline / floor, 3),
        "single_channel_vs_8_channels": round(
            servers["inline_1ch"]["best_images_per_s"] / servers["inline_8ch"]["best_images_per_s"], 3
        ),
        "engine_share_of_peak": engine["share_of_peak"],
        "server_vs_naive_keras": round(best_inline / max(servers["naive_keras"]["images_per_s"], 1e-9), 1),
        "batching_on_vs_off": round(best_inline / servers["batching_off"]["best_images_per_s"], 2),
        "urls_vs_inline": round(servers["url_1ch"]["best_images_per_s"] / best_inline, 3),
        "post4_p99_over_p50": round(post["p99_ms"] / post["p50_ms"], 2),
    }
    if "int8_inline_1ch" in servers:
        result["ratios"]["int8_vs_fp32_server_1ch"] = round(
            servers["int8_inline_1ch"]["best_images_per_s"] / servers["inline_1ch"]["best_images_per_s"], 2
        )
        result["ratios"]["int8_post4_p99_over_p50"] = round(
            servers["int8_post4_half_load"]["p99_ms"] / servers["int8_post4_half_load"]["p50_ms"], 2
        )
    return result


def markdown(r: dict[str, Any]) -> str:
    m, e, f, s, q = r["machine"], r["engine"], r["floor"], r["server"], r["ratios"]
    cores = m["cores"]
    rows = [
        (
            "Raw engine (ONNX Runtime), 1 thread, batch 1 / 8 / 32",
            f"{e['batch_1_1thread']} / {e['batch_8_1thread']} / {e['batch_32_1thread']} img/s",
            "",
        ),
        (
            f"Raw engine, {cores} processes x 1 thread, batch {e['best_batch']}",
            f"{e[f'{cores}_processes_x_1thread']} img/s",
            "",
        ),
        (
            f"Raw engine, 1 process x {cores} threads, batch {e['best_batch']}",
            f"{e[f'1_process_x_{cores}threads']} img/s",
            "",
        ),
        (
            "Raw engine, best layout above",
            f"{e['raw_images_per_s']} img/s = {e['raw_images_per_s'] * r['model']['gflop_per_image']:.0f} GFLOP/s",
            f"{100 * q['engine_share_of_peak']:.0f}% of fp32 peak (target >= 70%)",
        ),
        (
            "CPU floor: decode + inference + empty RPC per image",
            f"{f['decode_ms']} + {f['inference_ms']} + {f['empty_rpc_ms']['sync']} ms -> {f['images_per_s']} img/s",
            "",
        ),
        (
            "Server, inline 1024x768 JPEGs, 1 channel (saturation)",
            f"{s['inline_1ch']['best_images_per_s']} img/s at {s['inline_1ch']['best_concurrency']} in flight",
            f"{100 * s['inline_1ch']['best_images_per_s'] / f['images_per_s']:.0f}% of floor",
        ),
        (
            "Server, inline, 8 channels (saturation)",
            f"{s['inline_8ch']['best_images_per_s']} img/s",
            f"{100 * q['server_inline_vs_floor']:.0f}% of floor (target >= 80%)",
        ),
        (
            "Server, 8 concurrent calls, 1 channel / 8 channels",
            f"{s['at_8_concurrent_1ch']['images_per_s']} / {s['at_8_concurrent_8ch']['images_per_s']} img/s",
            f"p99 {s['at_8_concurrent_1ch']['p99_ms']} / {s['at_8_concurrent_8ch']['p99_ms']} ms",
        ),
        (
            "Server on URLs from the loopback image host",
            f"{s['url_1ch']['best_images_per_s']} img/s",
            f"{100 * q['urls_vs_inline']:.0f}% of inline (target >= 70%)",
        ),
        (
            "Server with batching off",
            f"{s['batching_off']['best_images_per_s']} img/s",
            f"batching on = {q['batching_on_vs_off']}x",
        ),
        (
            "Naive: Keras predict per call, no batching, same server",
            f"{s['naive_keras']['images_per_s']} img/s",
            f"server = {q['server_vs_naive_keras']}x (target >= 20x); RSS {s['naive_keras']['rss_mb']} MB",
        ),
        (
            f"4-image posts at half load ({s['post4_half_load']['rate_posts_per_s']} posts/s, open loop)",
            f"p50 {s['post4_half_load']['p50_ms']} ms, p99 {s['post4_half_load']['p99_ms']} ms",
            f"p99/p50 = {q['post4_p99_over_p50']} (target <= 3, p99 < 100 ms)",
        ),
        *ideal_rows(r),
        *int8_rows(r),
        *reader_rows(r),
        (
            "RSS: front process + workers",
            f"{s['rss']['front_mb']} + {s['rss']['workers_mb']} MB",
            "target < 200 MB per process",
        ),
        ("Start to SERVING (warm page cache)", f"{s['start_to_serving_s']} s", "target < 2 s"),
        (
            "Empty-RPC server CPU, sync vs grpc.aio",
            f"{f['empty_rpc_ms']['sync']} vs {f['empty_rpc_ms']['aio']} ms/call",
            "",
        ),
    ]
    lines = [
        f"Measured by `make bench` on {r['date']}: {m['model']}, {cores} cores at {m['ghz']} GHz "
        f"(AVX2 {m['avx2']}, AVX-512 {m['avx512f']}), Python {m['python']}; model v{r['model']['version']}, "
        f"{r['model']['input_size']}x{r['model']['input_size']} input, {r['model']['gflop_per_image']} GFLOP "
        f"per image. fp32 peak {m['peak_gflops']} GFLOP/s, {m['peak_source']}; numpy sgemm reaches "
        f"{r['sgemm_gflops']}. The load generator shares the cores (it used "
        f"{100 * s['inline_1ch']['generator_cpu_share']:.0f}% of one core at saturation).",
        "",
        "| what | measured | ratio |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def reader_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    reader = r["server"].get("reader")
    if reader is None:  # a bench.json from before the text reader
        return []
    on, off, q = reader["on"], reader["off"], reader["ratios"]
    return [
        (
            f"Text reader: server CPU per photo without text ({reader['photos']} photos), reader off / on",
            f"{off['photo_cpu_ms']} / {on['photo_cpu_ms']} ms; {100 * on['photos_read_share']:.0f}% sent to reading",
            f"{q['photo_cpu_on_vs_off']}x (target <= 1.5x)",
        ),
        (
            f"Text reader: server CPU per text-bearing image ({reader['text_images']}), reader on",
            f"{on['text_cpu_ms']} ms (off: {off['text_cpu_ms']}); {100 * on['text_read_share']:.0f}% sent to reading",
            "target <= 150 ms",
        ),
        (
            "Text reader: 80 % photos / 20 % text images, 1 channel, reader off / on",
            f"{off['mixed_1ch']['best_images_per_s']} / {on['mixed_1ch']['best_images_per_s']} img/s",
            f"{100 * q['mixed_on_vs_off']:.0f}% of reader off (target >= 30%)",
        ),
        *reader_part_rows(reader.get("parts")),
        (
            "Text reader: RSS per worker, reader on / off",
            f"{on['rss']['workers_mb']} / {off['rss']['workers_mb']} MB",
            f"start to SERVING {on['start_to_serving_s']} s (target < 300 MB, < 3 s)",
        ),
    ]


def reader_part_rows(parts: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    if not parts:
        return []
    return [
        (
            "Text reader parts, 1 thread: gate's detector map at 64 / 96 / 128 px; the gate per photo",
            f"{parts['gate_map_64_ms']} / {parts['gate_map_96_ms']} / {parts['gate_map_128_ms']} ms; "
            f"{parts['gate_ms_per_photo']} ms",
            "",
        ),
        (
            "Text reader parts: detection per text image at 640 / 960 px",
            f"{parts['detect_640_ms_per_text_image']} / {parts['detect_960_ms_per_text_image']} ms",
            "",
        ),
        (
            f"Text reader parts: recognition per line ({parts['lines']} lines), batches of 1 / 2 / 8",
            f"{parts['recognize_batch_1_ms_per_line']} / {parts['recognize_batch_2_ms_per_line']} / "
            f"{parts['recognize_batch_8_ms_per_line']} ms",
            "",
        ),
    ]


def ideal_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    post, cores = r["server"]["post4_half_load"], r["machine"]["cores"]
    if "ideal_at_measured" not in post:  # a bench.json from before the queue model
        return []
    rows = [
        (
            "4-image posts at half load: CPU per image, front process / workers",
            f"{post['front_cpu_ms_per_image']} / {post['workers_cpu_ms_per_image']} ms",
            "",
        )
    ]
    for key, what in (
        ("ideal_at_measured", "the workers' CPU per image under this load"),
        ("ideal_at_warm", "back-to-back decode + inference (the floor's)"),
    ):
        ideal = post[key]
        rows.append(
            (
                f"Ideal queue at the same rate (no overhead, FIFO over {cores} workers), {ideal['image_ms']} ms "
                f"per image: {what}",
                f"p50 {ideal['p50_ms']} ms, p99 {ideal['p99_ms']} ms",
                f"p99/p50 = {ideal['p99_ms'] / ideal['p50_ms']:.2f}; utilisation {ideal['utilisation']:.2f}",
            )
        )
    return rows


def int8_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    e, s, q, cores = r["engine"], r["server"], r["ratios"], r["machine"]["cores"]
    if "int8_inline_1ch" not in s:
        return []
    post = s["int8_post4_half_load"]
    return [
        (
            f"Opt-in int8 (make quantize): raw engine, {cores} processes x 1 thread",
            f"{e[f'int8_{cores}_processes_x_1thread']} img/s",
            "",
        ),
        (
            "Opt-in int8: server, inline, 1 channel (saturation)",
            f"{s['int8_inline_1ch']['best_images_per_s']} img/s",
            f"{q['int8_vs_fp32_server_1ch']}x the float32 server",
        ),
        (
            f"Opt-in int8: 4-image posts at its half load ({post['rate_posts_per_s']} posts/s)",
            f"p50 {post['p50_ms']} ms, p99 {post['p99_ms']} ms",
            f"p99/p50 = {q['int8_post4_p99_over_p50']}",
        ),
    ]


def update_readme(readme: Path, block: str, start: str = README_START, end: str = README_END) -> None:
    """Replaces what lies between the start and end markers with block."""
    text = readme.read_text()
    if start not in text or end not in text:
        print(f"{readme} has no {start} ... {end} block; not updated")
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{block}{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="models")
    parser.add_argument("--name", default="moderation")
    parser.add_argument("--images", default="var/loadtest-images")
    parser.add_argument("--out", default="var/bench")
    parser.add_argument("--step-s", type=float, default=6.0, help="seconds per load step")
    parser.add_argument("--engine-s", type=float, default=3.0, help="seconds per engine measurement")
    parser.add_argument("--post-s", type=float, default=60.0, help="seconds of 4-image posts at half load")
    parser.add_argument("--reader-repeats", type=int, default=3, help="calls per image for the reader's CPU figures")
    parser.add_argument("--readme", default="README.md", help="README to update ('' to leave it alone)")
    parser.add_argument("--render", metavar="BENCH_JSON", help="only re-render the table from an earlier run")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.render:
        result = json.loads(Path(args.render).read_text())
    else:
        result = run(args)
        (Path(args.out) / "bench.json").write_text(json.dumps(result, indent=2))
    block = markdown(result)
    (Path(args.out) / "bench.md").write_text(block)
    print(block)
    if args.readme:
        update_readme(Path(args.readme), block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
