"""Several vramscribe processes and machines: node ids, the scheduler lock, leases, the
host-wide reservation ledger, and (with the ``ray`` extra) the Ray dispatch."""
