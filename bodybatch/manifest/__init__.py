"""The audit manifest: one :class:`ManifestRow` per output track (or per failed or
empty video), in JSON Lines.

- :mod:`.row`: the row type (constructors from a finished job, accessors, one
  serialization);
- :mod:`.store`: the canonical file and the append-only journals (streamed reading,
  appending, compaction).
"""

from bodybatch.manifest.row import STATUSES, ManifestRow
from bodybatch.manifest.store import Journal, compact_manifest, iter_manifest, journal_files, read_manifest

__all__ = ["ManifestRow", "STATUSES", "Journal", "iter_manifest", "read_manifest", "compact_manifest",
           "journal_files"]  # fmt: skip
