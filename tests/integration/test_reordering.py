"""Shuffled, duplicated, late S3 events end in the state S3 itself is in.

A random history of uploads and deletes is applied to a few keys; every
operation's event is delivered at a random later moment (some twice), in
between later operations, as S3 does. Afterwards the records and renditions
must match the bucket exactly: on each backend, for many seeds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib import keys
from tests.integration.conftest import Stack
from tests.support import jpeg

KEYS = ["photo.jpg", "dir/shot (2).jpg", "dir/ünï.jpg"]
# A few distinct contents; re-uploading one gives the same ETag again.
CONTENTS = [jpeg(64, 48), jpeg(48, 64), jpeg(80, 40)]
SIZES = [(64, 48), (48, 64), (80, 40)]


@dataclass
class Truth:
    content: int | None = None  # index into CONTENTS; None: absent
    sequencer: str = ""  # of the last operation on the key


def run_history(stack: Stack, rng: random.Random, operations: int) -> dict[str, Truth]:
    truth = {key: Truth() for key in KEYS}
    pending: list[dict[str, Any]] = []

    def deliver_some(chance: float) -> None:
        rng.shuffle(pending)
        while pending and rng.random() < chance:
            stack.deliver(pending.pop())

    for _ in range(operations):
        key = rng.choice(KEYS)
        if truth[key].content is not None and rng.random() < 0.4:
            stack.s3.delete_object(Bucket="uploads", Key=key)
            truth[key].content = None
            event = stack.record(key, "ObjectRemoved:Delete")
        else:
            content = rng.randrange(len(CONTENTS))
            stack.put(key, CONTENTS[content])
            truth[key].content = content
            event = stack.record(key)
        truth[key].sequencer = event["s3"]["object"]["sequencer"]
        pending.append(event)
        if rng.random() < 0.3:
            pending.append(event)  # delivered twice
        deliver_some(0.5)
    deliver_some(1.0)
    return truth


@pytest.mark.parametrize("seed", range(12))
def test_final_state_matches_the_bucket(stack: Stack, seed: int) -> None:
    truth = run_history(stack, random.Random(seed), operations=14)

    images = {i["key"]: i for i in stack.images("?limit=100")}
    assert stack.images("?status=failed") == []
    expected_keys = {k for k, t in truth.items() if t.content is not None}
    assert set(images) == expected_keys, seed
    renditions = set(stack.keys("resized/"))
    listed: set[str] = set()
    for key in expected_keys:
        image = images[key]
        content = truth[key].content
        assert content is not None
        assert (image["width"], image["height"]) == SIZES[content]
        head = stack.s3.head_object(Bucket="uploads", Key=key)
        assert image["etag"] == head["ETag"].strip('"')
        for rendition in image["renditions"].values():
            meta = stack.s3.head_object(Bucket="uploads", Key=rendition["key"])["Metadata"]
            assert meta["source-etag"] == image["etag"]
            listed.add(rendition["key"])
    assert renditions == listed  # no orphans of deleted or replaced uploads
    # The stored state reflects each key's newest event, record or tombstone.
    repository = stack.app._pipeline().repository
    for key, state in truth.items():
        if state.sequencer:
            stored = repository.load(keys.image_id("uploads", key))
            assert stored is not None
            assert stored.sequencer == keys.normalise_sequencer(state.sequencer), (seed, key)
            assert (stored.live is not None) == (state.content is not None)
    folders = {f["prefix"] for f in stack.get("/folders")[1]["folders"]}
    assert folders == ({"dir/"} if any(k.startswith("dir/") for k in expected_keys) else set())
