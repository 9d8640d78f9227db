"""Policy, sampling, request validation and the config tree: pure functions, no servers."""

from __future__ import annotations

import argparse
import hashlib

import pytest

from server.config import LimitsConfig, add_arguments, build_config
from server.errors import InvalidRequest
from server.pipeline.policy import Policy, parse_overrides
from server.pipeline.sampling import is_sampled, sample_score
from server.pipeline.validate import validate_call
from server.types import ClassifyCall, Decision, ImageInput

CLASSES = ["ham", "sexual", "personal_info"]
THRESHOLDS = {"sexual": {"review": 0.5, "block": 0.9}, "personal_info": {"review": 0.6, "block": 0.95}}


def scores(sexual: float, personal: float) -> dict[str, float]:
    return {"ham": 1 - sexual - personal, "sexual": sexual, "personal_info": personal}


@pytest.mark.parametrize(
    ("sexual", "personal", "decision"),
    [
        (0.1, 0.1, Decision.PASS),
        (0.49, 0.2, Decision.PASS),
        (0.5, 0.0, Decision.REVIEW),
        (0.0, 0.6, Decision.REVIEW),
        (0.9, 0.0, Decision.BLOCK),
        (0.0, 0.96, Decision.BLOCK),
        (0.55, 0.3, Decision.REVIEW),
    ],
)
def test_policy_follows_thresholds(sexual, personal, decision):
    assert Policy(CLASSES, "ham", THRESHOLDS, {}).decide(scores(sexual, personal)) == decision


def test_policy_overrides_win_and_are_checked():
    policy = Policy(CLASSES, "ham", THRESHOLDS, parse_overrides("sexual.review=0.2,sexual.block=0.3"))
    assert policy.decide(scores(0.25, 0.0)) == Decision.REVIEW
    assert policy.decide(scores(0.35, 0.0)) == Decision.BLOCK
    with pytest.raises(ValueError, match="does not have"):
        Policy(CLASSES, "ham", THRESHOLDS, parse_overrides("violence.review=0.2"))
    with pytest.raises(ValueError, match="below review"):
        Policy(CLASSES, "ham", THRESHOLDS, parse_overrides("sexual.block=0.1"))
    with pytest.raises(ValueError, match="form"):
        parse_overrides("sexual=0.3")
    with pytest.raises(ValueError, match="within"):
        parse_overrides("sexual.review=3")


def test_sampling_is_deterministic_and_near_the_rate():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(100_000)]
    picked = [h for h in hashes if is_sampled(h, 0.01)]
    # Binomial(100k, 1%): sd ~31; 6 sd either side would fail once in ~10^9 runs.
    assert 1000 - 190 < len(picked) < 1000 + 190
    assert picked == [h for h in hashes if is_sampled(h, 0.01)]
    assert not any(is_sampled(h, 0.0) for h in hashes[:1000])
    assert all(0 <= sample_score(h) < 1 for h in hashes[:1000])
    salted = [h for h in hashes if is_sampled(h, 0.01, salt="tenant-a")]
    assert salted != picked  # a salt gives another (still deterministic) sample


def call(*images: ImageInput, post_id: str = "p") -> ClassifyCall:
    return ClassifyCall(post_id=post_id, images=images)


@pytest.mark.parametrize(
    ("request_call", "message"),
    [
        (call(), "no images"),
        (call(*(ImageInput(id=str(i), url="http://example.test/a.jpg") for i in range(17))), "17 images, limit 16"),
        (call(ImageInput(id="a", url="file:///etc/passwd")), "scheme 'file' is not allowed"),
        (call(ImageInput(id="a", url="gopher://example.test/")), "scheme 'gopher' is not allowed"),
        (call(ImageInput(id="a", url="http://example.test/" + "a" * 3000)), "url is 3020 characters, limit 2048"),
        (call(ImageInput(id="a")), "neither url nor content"),
        (call(ImageInput(id="", url="http://example.test/a.jpg")), "id is empty"),
        (
            call(ImageInput(id="a", url="http://x.test/1.jpg"), ImageInput(id="a", url="http://x.test/2.jpg")),
            "used twice",
        ),
        (call(ImageInput(id="a", content=b"")), "content is empty"),
        (call(ImageInput(id="a", content=b"x" * 11)), "content is 11 bytes, limit 10"),
        (call(ImageInput(id="a", url="http:///nohost.jpg")), "no host"),
        (call(ImageInput(id="a", url="http://example.test:99999/")), "malformed"),
        (call(ImageInput(id="a", url="http://example.test/a b.jpg")), "whitespace"),
        (call(ImageInput(id="a", url="http://example.test/"), post_id="p" * 300), "post_id is 300 characters"),
    ],
)
def test_malformed_requests_are_refused_with_a_clear_message(request_call, message):
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_call(request_call, LimitsConfig(max_inline_bytes=10))


def test_valid_request_passes():
    validate_call(
        call(ImageInput(id="a", url="https://example.test/a.jpg"), ImageInput(id="b", content=b"xyz")), LimitsConfig()
    )


def test_config_tree_from_flags_and_environment():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--server-port", "6000", "--fetch-allow", "127.0.0.1:8080, 10.0.0.0/8", "--batch-max-queue-delay-ms", "3.5"]
    )
    config = build_config(
        args,
        {"MODERATION_SERVER_PORT": "7000", "MODERATION_AUDIT_SAMPLE_RATE": "0.05", "MODERATION_LOG_LEVEL": "debug"},
    )
    assert config.server.port == 6000  # the flag wins over the environment
    assert config.audit.sample_rate == 0.05
    assert config.fetch.allow == ("127.0.0.1:8080", "10.0.0.0/8")
    assert config.batch.max_queue_delay_ms == 3.5
    assert config.log_level == "debug"
    assert config.limits.max_images == 16
    with pytest.raises(SystemExit, match=r"server\.port"):
        build_config(parser.parse_args(["--server-port", "many"]), {})
