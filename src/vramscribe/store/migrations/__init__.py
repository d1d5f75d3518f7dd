"""Alembic migrations for the job store; :class:`~vramscribe.store.Store` runs them on open."""
