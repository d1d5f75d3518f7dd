"""The imperative shell: reads devices, asks the planner, runs worker processes."""
