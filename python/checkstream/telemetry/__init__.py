"""Telemetry shared by every part: Prometheus metrics (see :mod:`checkstream.telemetry.metrics`)."""
