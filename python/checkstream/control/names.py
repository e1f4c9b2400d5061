"""The shapes of the names in control plane URLs, checked before anything is looked up: a node id
also names a directory of shipped evidence, so it must never hold ``/`` or start with ``.``."""

from __future__ import annotations

import re

__all__ = ["CHANNEL", "NODE_ID", "VERSION", "VERSION_PREFIX"]

CHANNEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
VERSION = re.compile(r"^[0-9a-f]{64}$")
VERSION_PREFIX = re.compile(r"^[0-9a-f]{12,64}$")  # a short version, as the fleet page shows
