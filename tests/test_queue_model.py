"""The ideal-queue reference that `make bench` reports beside the measured post latencies."""

from __future__ import annotations

import pytest

from loadtest.queue_model import ideal_post_latency


def test_one_image_one_worker_matches_the_pollaczek_khinchine_mean():
    # M/D/1: mean time in system = d + rho * d / (2 (1 - rho)), exactly.
    d, rate = 0.010, 50.0  # rho = 0.5
    result = ideal_post_latency(rate, 1, d, 1, posts=200_000)
    expected_ms = 1000 * (d + 0.5 * d / (2 * 0.5))
    assert result.utilisation == 0.5
    assert result.mean_ms == pytest.approx(expected_ms, rel=0.03)


def test_at_a_trickle_a_post_takes_its_share_of_images_per_worker():
    # Four images on two workers, nobody else in the queue: two image times.
    result = ideal_post_latency(0.01, 4, 0.008, 2, posts=2_000)
    assert result.p50_ms == pytest.approx(16.0, abs=0.01)
    assert result.p99_ms == pytest.approx(16.0, abs=0.5)


def test_the_tail_grows_with_load_and_the_median_much_less():
    light = ideal_post_latency(10, 4, 0.007, 2)
    half = ideal_post_latency(36, 4, 0.007, 2)
    assert half.utilisation == pytest.approx(0.504)
    assert half.p99_ms > 2 * light.p99_ms
    assert half.p99_ms / half.p50_ms > light.p99_ms / light.p50_ms


def test_an_overloaded_queue_is_refused():
    with pytest.raises(ValueError, match="utilisation"):
        ideal_post_latency(100, 4, 0.007, 2)
