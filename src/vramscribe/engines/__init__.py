"""Engines: what turns audio into a transcript inside a worker process."""
