"""What an ideal server would do with the same work: the latency of posts in a queue with no
overhead at all, so that a measured tail can be read against the tail that queueing alone gives.

Posts arrive as a Poisson process; each post's images join one FIFO queue and every image takes
`image_s` on whichever of `workers` becomes free first (work-conserving, image by image: a
post's images are spread over the workers, as the batcher spreads them). A post is done when its
last image is. Nothing else costs time: no RPC, no batching delay, no other process on the cores.

Under Poisson arrivals even this server has a tail: at half load, bursts of posts queue behind
each other. `make bench` reports this beside the measured figures, with the per-image worker
time measured in the same run."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class IdealLatency:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    utilisation: float  # share of the workers' time that is busy


def ideal_post_latency(
    posts_per_s: float, images_per_post: int, image_s: float, workers: int, posts: int = 100_000, seed: int = 0
) -> IdealLatency:
    if posts_per_s <= 0 or image_s <= 0 or workers < 1 or images_per_post < 1:
        raise ValueError("rate, image time, workers and images per post must be positive")
    utilisation = posts_per_s * images_per_post * image_s / workers
    if utilisation >= 1:
        raise ValueError(f"utilisation {utilisation:.2f} >= 1: the queue grows without bound")
    rng = random.Random(seed)
    free_at = [0.0] * workers  # a heap: when each worker next becomes free
    now = 0.0
    latencies = []
    for _ in range(posts):
        now += rng.expovariate(posts_per_s)
        done = now
        for _ in range(images_per_post):
            start = max(heapq.heappop(free_at), now)
            heapq.heappush(free_at, start + image_s)
            done = max(done, start + image_s)
        latencies.append(done - now)
    latencies.sort()
    return IdealLatency(
        p50_ms=round(latencies[len(latencies) // 2] * 1000, 1),
        p99_ms=round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        mean_ms=round(sum(latencies) / len(latencies) * 1000, 2),
        utilisation=round(utilisation, 3),
    )
