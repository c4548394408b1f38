"""Which S3 events may change stored state: S3 delivers at least once and out
of order. Pure rules, applied by the pipeline to what a repository returns, and
made safe against concurrent writers by the repositories' compare-and-swap on
a version number.

Sequencers are compared as AWS documents (see ``keys.normalise_sequencer``).
Events without one (local emulators, backfill) are applied in arrival order
where nothing newer with a sequencer is stored; the pipeline's "the object is
the truth" checks (read with If-Match, HEAD before a removal) cover them.
"""

from __future__ import annotations

import enum

from chalicelib.models import EventKind
from chalicelib.repositories.base import StoredImage


class Decision(enum.Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"  # the same event again: finish any unfinished work
    STALE = "stale"  # older than what is stored: nothing changes


def decide(
    stored: StoredImage | None, kind: EventKind, sequencer: str, etag: str | None
) -> Decision:
    """Whether an event with this (normalised) sequencer and ETag applies."""
    if stored is None:
        return Decision.APPLY
    if sequencer and stored.sequencer:
        if sequencer > stored.sequencer:
            return Decision.APPLY
        return Decision.DUPLICATE if sequencer == stored.sequencer else Decision.STALE
    if sequencer:
        # Stored state came from an event without a sequencer; a real one wins.
        return Decision.APPLY
    if not stored.sequencer:
        return Decision.APPLY
    # No sequencer on the event, but the stored state has one.
    if kind is EventKind.CREATED:
        # Re-processing the same content (backfill, settings change) is fine;
        # different content or a tombstone is for the sequenced events to settle.
        live = stored.live
        if live is not None and etag is not None and live.etag == etag:
            return Decision.APPLY
        return Decision.STALE
    # A removal without a sequencer (backfill prune, folder clean-up) is only
    # issued after a HEAD showed the object gone.
    return Decision.APPLY if stored.live is not None else Decision.DUPLICATE
