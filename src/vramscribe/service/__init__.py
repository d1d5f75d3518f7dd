"""The long-running service: durable jobs, an HTTP API and live events."""
