"""The job store: jobs, their state histories and learned footprints, in a database.

SQLite (one file in the data folder) for a single machine, PostgreSQL when
several services share one queue; the schema is migrated on open.
"""

from vramscribe.store.records import JobRecord
from vramscribe.store.store import Store

__all__ = ["JobRecord", "Store"]
