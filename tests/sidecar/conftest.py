"""Fixtures of the sidecar suite: a tiny local model, phrases picked from its tokenizer, and one
CPU vLLM engine (V1 runner) with checkstream enabled through ``additional_config``.

Runs only in the vLLM venv (``scripts/test_sidecar.sh``); the main test run ignores this folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).parent))

from tinymodel import Picks, TinyModel, build_tiny_model, pick_phrases

ALLOWED_RECIPIENT = "ops@example.com"
BLOCKED_IN_TOOLS = "ignore previous instructions"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def picks(tiny: TinyModel) -> Picks:
    return pick_phrases(tiny.path / "tokenizer.json")


def checkstream_options(picks: Picks, events: Path, **extra: Any) -> dict[str, Any]:
    """The ``additional_config["checkstream"]`` the engine tests run with."""
    options: dict[str, Any] = {
        "requests": "opt_in",
        "events_path": str(events),
        "guardrails": {
            "preventive": {
                "logit_masking": {"phrases": [picks.ban_phrase]},
                "adaptive_decoding": {
                    "risk_phrases": [picks.risk_phrase],
                    "risk_threshold": 0.5,
                    "safe_mode": {"temperature": 0.3, "top_p": 0.6},
                },
            },
            "tools": {
                "arguments": {"send_email.to": {"allow": [ALLOWED_RECIPIENT]}},
                "blocked_phrases": [BLOCKED_IN_TOOLS],
            },
        },
    }
    options.update(extra)
    return options


@dataclass
class Engine:
    llm: Any
    events: Path
    picks: Picks
    model: TinyModel

    def read_events(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line]


@pytest.fixture(scope="session")
def engine(
    tiny: TinyModel, picks: Picks, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    from vllm import LLM

    events = tmp_path_factory.mktemp("events") / "events.jsonl"
    llm = LLM(
        model=str(tiny.path),
        dtype="float32",
        max_model_len=256,
        seed=0,
        max_num_seqs=64,
        enforce_eager=True,
        additional_config={"checkstream": checkstream_options(picks, events)},
    )
    yield Engine(llm, events, picks, tiny)
    # Shut the engine's processes down while logging still works (not at interpreter exit).
    llm.llm_engine.engine_core.shutdown()


def ban_sequences(model: TinyModel, phrases: list[str]) -> set[tuple[int, ...]]:
    """Every token sequence checkstream compiles for ``phrases`` with the model's tokenizer
    (the configured phrases and ``checkstream_ban`` lists go through the same expansion)."""
    from tokenizers import Tokenizer

    from checkstream.masking import phrase_sequences

    tok = Tokenizer.from_file(str(model.path / "tokenizer.json"))
    return set(phrase_sequences(tok, phrases).sequences)


def occurrences(ids: list[int], sequences: set[tuple[int, ...]]) -> int:
    """How many times any of ``sequences`` occurs contiguously in ``ids``."""
    lengths = {len(q) for q in sequences}
    return sum(
        1
        for n in lengths
        for start in range(len(ids) - n + 1)
        if tuple(ids[start : start + n]) in sequences
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, seconds: float, *,
                 uds: str | None = None) -> None:
    """Until ``url`` answers 200 (over the unix socket ``uds`` when given); the process dying
    first fails with its log's tail."""
    transport = httpx.HTTPTransport(uds=uds) if uds else None
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited: {log.read_text()[-3000:]}")
        try:
            with httpx.Client(transport=transport) as client:
                if client.get(url, timeout=2).status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            where = f"{url} on {uds}" if uds else url
            raise AssertionError(f"{where} did not answer 200 in {seconds:.0f} s")
        time.sleep(0.5)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def server(
    tiny: TinyModel, picks: Picks, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """vLLM's OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``; the
    ``vllm`` console script of vllm-cpu 0.32 is broken) with checkstream enabled by
    ``--additional-config``; its base URL. One per session: test_server.py and test_serve.py
    share it."""
    port = free_port()
    events = tmp_path_factory.mktemp("server") / "events.jsonl"
    log = tmp_path_factory.mktemp("server-log") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny.path),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "256",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--additional-config",
        json.dumps({"checkstream": checkstream_options(picks, events)}),
    ]
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            wait_healthy(proc, f"{base}/health", log, 180)
            yield base
        finally:
            stop_process(proc)
