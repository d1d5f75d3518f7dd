"""``vramscribe devices --ray``: every node's devices, each read on its own node.

A small task pinned to each node that has devices (its ``vramscribe.device``
label, or GPUs) reads them there, as the node agent would; nothing else runs,
so it works whether or not a service is using the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vramscribe.cluster.ray_head import node_device


@dataclass(frozen=True)
class NodeDevice:
    node_id: str
    address: str
    device_id: str
    kind: str
    total_mb: float
    free_mb: float
    processes: dict[int, float]


def read_node_devices(address: str | None, timeout_s: float = 120.0) -> list[NodeDevice]:
    """The devices of every live node with devices, node by node (``address``: ``ray.init``'s)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        remote: Any = ray.remote
        read = remote(num_cpus=0)(_read_here)
        pending = []
        for node in ray.nodes():  # type: ignore[no-untyped-call]
            device = node_device(node)
            if not node.get("Alive", False) or device is None:
                continue
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ref = read.options(scheduling_strategy=strategy).remote(device)
            pending.append((str(node["NodeID"]), str(node.get("NodeManagerAddress", "")), ref))
        found: list[NodeDevice] = []
        for node_id, addr, ref in pending:
            for row in ray.get(ref, timeout=timeout_s):
                found.append(NodeDevice(node_id, addr, **row))
        return found
    finally:
        if started:
            ray.shutdown()


def _read_here(device: str) -> list[dict[str, Any]]:
    """On the node: its devices as ``pick_devices`` finds them, read once."""
    from vramscribe.devices.select import pick_devices

    rows = []
    for dev in pick_devices(device, 1):
        reading = dev.read(0.0)
        rows.append(
            {
                "device_id": dev.id,
                "kind": dev.kind,
                "total_mb": reading.total_mb,
                "free_mb": reading.free_mb,
                "processes": dict(reading.processes),
            }
        )
    return rows
