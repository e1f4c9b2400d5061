"""Full-evidence routes: nodes upload segments of their decision log; admins export them.

================================================  ======  ======================================
``POST /v1/nodes/{node_id}/evidence``             node    a segment (whole lines of the log);
                                                          201, or 409/422 with a ``reason`` and
                                                          the stored ``head`` (nothing stored)
``GET /v1/nodes/{node_id}/evidence/head``         node    the last stored ``{seq, hash}`` (or null)
``GET /v1/evidence/export?format=jsonl|csv``      admin   ``node`` (required for jsonl), ``since``,
                                                          ``until``: one checked file
================================================  ======  ======================================

Uploads are refused with 403 ``evidence_disabled`` unless the server runs with
``--accept-evidence``: full evidence may hold raw prompts (a node logging with
``telemetry.mode: full_evidence``), so both ends must opt in before any leaves the node.

Uploads of one node are serialised (a lock per node id) from the chain check to the append, so
two segments racing each other cannot both be checked against the same head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from quart import Quart, Response, request

from checkstream.audit.export import ExportFilter, parse_time
from checkstream.control.access import Access
from checkstream.control.evidence_chain import ChainHead, SegmentRefused, check_segment
from checkstream.control.evidence_export import EvidenceCorrupt, export_csv, export_jsonl
from checkstream.control.names import NODE_ID
from checkstream.control.responses import error_response, json_response
from checkstream.control.storage import ControlStore

__all__ = ["MAX_SEGMENT_BYTES", "register_evidence_routes"]

log = logging.getLogger("checkstream.control.evidence")

MAX_SEGMENT_BYTES = 8 * 1024 * 1024
_SPOOL_BYTES = 8 * 1024 * 1024  # an export is built aside, in memory up to this, then on disk


def _head_json(head: ChainHead | None) -> dict[str, Any] | None:
    return None if head is None else {"seq": head.seq, "hash": head.hash}


def register_evidence_routes(
    app: Quart, store: ControlStore, access: Access, *, accept: bool
) -> None:
    locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    evidence = store.evidence

    def disabled() -> Response | None:
        if accept:
            return None
        return error_response(403, "evidence_disabled", "this control plane does not accept "
                              "full evidence (start it with --accept-evidence)")

    @app.post("/v1/nodes/<node_id>/evidence")
    async def evidence_upload(node_id: str) -> Response:
        if not NODE_ID.match(node_id):
            return error_response(400, "bad_node_id", f"{node_id[:64]!r} is not a node id")
        access.node(node_id)
        if (off := disabled()) is not None:
            return off
        if (request.content_length or 0) > MAX_SEGMENT_BYTES:
            return error_response(413, "too_large",
                                  f"a segment is at most {MAX_SEGMENT_BYTES} bytes")
        data = await request.get_data(cache=False, as_text=False)
        assert isinstance(data, bytes)
        if len(data) > MAX_SEGMENT_BYTES:
            return error_response(413, "too_large",
                                  f"a segment is at most {MAX_SEGMENT_BYTES} bytes")
        async with locks[node_id]:
            head = evidence.head(node_id)
            try:
                checked = await asyncio.to_thread(check_segment, data, head)
            except SegmentRefused as exc:
                evidence.refused(node_id, exc.reason, str(exc))
                log.warning("evidence from %s refused (%s): %s", node_id, exc.reason, exc)
                return error_response(exc.status, exc.reason, str(exc), head=_head_json(head))
            stored = await asyncio.to_thread(evidence.append, node_id, checked)
        log.info("evidence from %s: seq %d..%d stored", node_id, stored.first_seq,
                 stored.last_seq)
        return json_response({"stored": {"first_seq": stored.first_seq,
                                         "last_seq": stored.last_seq,
                                         "records": checked.records},
                              "head": _head_json(checked.head)}, 201)

    @app.get("/v1/nodes/<node_id>/evidence/head")
    async def evidence_head(node_id: str) -> Response:
        if not NODE_ID.match(node_id):
            return error_response(400, "bad_node_id", f"{node_id[:64]!r} is not a node id")
        access.node(node_id)
        if (off := disabled()) is not None:
            return off
        return json_response({"head": _head_json(evidence.head(node_id))})

    @app.get("/v1/evidence/export")
    async def evidence_export() -> Response:
        access.admin()
        fmt = request.args.get("format")
        if fmt not in ("jsonl", "csv"):
            return error_response(400, "bad_format", "format must be jsonl or csv (the aggregate "
                                  "telemetry CSV is at /v1/telemetry/export)")
        bounds: dict[str, Any] = {}
        for name in ("since", "until"):
            text = request.args.get(name)
            try:
                bounds[name] = parse_time(text) if text else None
            except ValueError as exc:
                return error_response(400, f"bad_{name}", str(exc))
        flt = ExportFilter(since=bounds["since"], until=bounds["until"])
        node = request.args.get("node")
        held = evidence.node_ids()
        if node is not None and node not in held:
            return error_response(404, "not_found", f"no evidence stored for node {node[:64]!r}")
        if fmt == "jsonl" and node is None:
            return error_response(400, "node_required", "a JSON lines export is one node's "
                                  "chain: give node=<node_id> (or use format=csv for several)")
        nodes = [node] if node is not None else held
        out = tempfile.SpooledTemporaryFile(_SPOOL_BYTES, mode="w+", encoding="utf-8",  # noqa: SIM115
                                            newline="")
        try:
            async with contextlib.AsyncExitStack() as stack:
                # Appends wait while the export reads (name order: exports never deadlock).
                for each in sorted(set(nodes)):
                    await stack.enter_async_context(locks[each])
                if fmt == "jsonl":
                    count = await asyncio.to_thread(export_jsonl, evidence, nodes[0], flt, out)
                else:
                    count = await asyncio.to_thread(export_csv, evidence, nodes, flt, out)
        except EvidenceCorrupt as exc:
            out.close()
            log.error("evidence export refused: %s", exc)
            return error_response(500, "evidence_corrupt", str(exc))
        out.seek(0)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"checkstream-evidence-{node or 'all'}-{stamp}.{fmt}"
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
        return Response(_stream(out), content_type=content_type, headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Checkstream-Records": str(count)})


async def _stream(out: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := out.read(64 * 1024):
            yield chunk.encode("utf-8")
    finally:
        out.close()
