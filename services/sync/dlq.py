"""The sync worker's dead letters: those of family `outlook-sync` on the dead-letter topic.

They share the topic and the re-submission ledger of services.projections.dlq; the
family header tells them apart.
"""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from services.projections.dlq import DeadLetter, list_dead_letters, resubmit
from shared.settings import KontaktSettings

#: The x-family header of the sync worker's dead letters.
FAMILY = "outlook-sync"


async def list_sync_dead_letters(settings: KontaktSettings, pool: asyncpg.Pool) -> list[DeadLetter]:
    """Every dead letter of the sync worker, with when (if ever) it was re-submitted."""
    return [d for d in await list_dead_letters(settings, pool) if d.family == FAMILY]


async def resubmit_sync(
    settings: KontaktSettings, pool: asyncpg.Pool, ids: Collection[str] | None = None
) -> list[DeadLetter]:
    """Publish the sync worker's dead letters again (all not yet re-submitted, or `ids`)."""
    letters = await list_sync_dead_letters(settings, pool)
    if ids is None:
        chosen = [d.id for d in letters if d.resubmitted_at is None]
    else:
        unknown = set(ids) - {d.id for d in letters}
        if unknown:
            raise KeyError(f"no dead letter of the sync worker {', '.join(sorted(unknown))}")
        chosen = list(ids)
    if not chosen:
        return []
    return await resubmit(settings, pool, chosen)
