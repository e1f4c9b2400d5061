"""The decision log: tamper-evident evidence of every decision.

``DecisionLog`` appends records (from ``checkstream.engine.records.build_record``) off the request
path into an append-only file, each sealed into a SHA-256 hash chain over canonical JSON and
optionally HMAC'd and/or Ed25519-signed; ``verify_log`` checks the files on disk and names the
first bad record; ``export`` writes CSV or JSON lines. The file format is described in
:mod:`checkstream.audit.chain`, durability and crash recovery in :mod:`checkstream.audit.log`.
"""

from checkstream.audit.canonical import canonical_json
from checkstream.audit.chain import GENESIS_HASH
from checkstream.audit.errors import (
    AuditError,
    AuditKeyError,
    CanonicalError,
    LogClosedError,
    LogCorruptError,
    LogInUseError,
)
from checkstream.audit.export import ExportFilter, export
from checkstream.audit.keys import (
    generate_keypair,
    load_hmac_key,
    load_public_key,
    load_signing_key,
)
from checkstream.audit.log import DecisionLog, FsyncPolicy
from checkstream.audit.verify import BadRecord, VerifyResult, verify_log

__all__ = [
    "GENESIS_HASH",
    "AuditError",
    "AuditKeyError",
    "BadRecord",
    "CanonicalError",
    "DecisionLog",
    "ExportFilter",
    "FsyncPolicy",
    "LogClosedError",
    "LogCorruptError",
    "LogInUseError",
    "VerifyResult",
    "canonical_json",
    "export",
    "generate_keypair",
    "load_hmac_key",
    "load_public_key",
    "load_signing_key",
    "verify_log",
]
