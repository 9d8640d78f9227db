"""Near-duplicate groups among the records an operator holds, so a campaign of reposted images
is judged once.

Two records belong together when they carry the same content hash (the same bytes), or when
their images' dHashes differ in at most `distance` bits and their mean colours are close.
Grouping is transitive (union-find): A~B and B~C put A, B and C in one group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from review.images import ReviewImage

# dHash only sees brightness gradients: a flat or recoloured image matches images of any colour
# with the same layout, and for this service colour is often the whole difference. Mean
# channels further apart than this are not duplicates, whatever the hash says.
MAX_MEAN_COLOUR_DIFF = 32


@dataclass(frozen=True)
class Member:
    record_id: str
    content_sha256: str
    image: ReviewImage | None


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def similar(a: ReviewImage | None, b: ReviewImage | None, distance: int) -> bool:
    if distance < 0 or a is None or b is None or a.dhash is None or b.dhash is None:
        return False
    if a.mean_rgb is None or b.mean_rgb is None:
        return False
    if max(abs(x - y) for x, y in zip(a.mean_rgb, b.mean_rgb, strict=True)) > MAX_MEAN_COLOUR_DIFF:
        return False
    return hamming(a.dhash, b.dhash) <= distance


def group(members: Sequence[Member], distance: int) -> list[list[str]]:
    """Record ids in groups; groups and their members keep the order of `members` (oldest
    first), so a group is shown where its oldest record would be."""
    parent = list(range(len(members)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    by_hash: dict[str, int] = {}
    for i, member in enumerate(members):
        if member.content_sha256:
            if member.content_sha256 in by_hash:
                join(i, by_hash[member.content_sha256])
            else:
                by_hash[member.content_sha256] = i
    # Quadratic, over one operator's lease (tens of records): cheaper than any index.
    for i in range(len(members)):
        for j in range(i + 1, len(members)):
            if root(i) != root(j) and similar(members[i].image, members[j].image, distance):
                join(i, j)
    groups: dict[int, list[str]] = {}
    for i, member in enumerate(members):
        groups.setdefault(root(i), []).append(member.record_id)
    return list(groups.values())
