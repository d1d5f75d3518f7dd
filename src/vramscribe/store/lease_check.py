"""The lease check inside a state change: only the job's current holder may move it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vramscribe.errors import LeaseLost
from vramscribe.store.schema import LeaseRow


def check_holder(session: Session, job_id: str, holder: str, *, ends: bool) -> None:
    """Raise ``LeaseLost`` unless ``holder`` holds ``job_id``'s lease; ``ends``: drop it.

    Called with the job's row locked, so no claim can slip in between the
    check and the write that follows it.
    """
    lease = session.get(LeaseRow, job_id)
    if lease is None or lease.holder != holder:
        owner = "nobody" if lease is None else f"node {lease.node_id}"
        raise LeaseLost(f"job {job_id} is no longer ours (its lease is held by {owner})")
    if ends:
        session.delete(lease)
