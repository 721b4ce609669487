"""The sync worker's dead letters: those of family `outlook-sync` on the dead-letter topic.

They share the topic and the re-submission ledger of services.projections.dlq; the
family header tells them apart (`list_dead_letters(..., family=FAMILY)`).
"""

from __future__ import annotations

#: The x-family header of the sync worker's dead letters.
FAMILY = "outlook-sync"
