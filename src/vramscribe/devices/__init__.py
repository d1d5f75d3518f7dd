"""Devices: NVML GPUs, the CPU, and a fake for tests and the simulator."""
