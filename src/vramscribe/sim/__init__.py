"""Discrete-event simulator: the real planner against fake GPUs on a virtual clock."""
