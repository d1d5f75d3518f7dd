"""The pure scheduling core: no I/O, no threads, no wall clock.

Time and device readings come in as arguments, decisions go out as values,
so every rule here is tested on a fake clock and reused unchanged by the
simulator and the runtime.
"""
