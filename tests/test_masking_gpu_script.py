"""The prepared CUDA script (benches/gpu/mask_cuda.py): its CPU half runs and checks here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benches" / "gpu" / "mask_cuda.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mask_cuda", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_checks_every_step_and_writes_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script()
    monkeypatch.setenv("OUT", str(tmp_path))
    summary = script.main(
        [
            "--dry-run",
            "--steps",
            "12",
            "--sequences",
            "500",
            "--vocab",
            "4096",
            "--batches",
            "1",
            "8",
        ]
    )
    written = json.loads((tmp_path / "mask_cuda.json").read_text())
    assert written == summary
    assert summary["mode"] == "dry-run"
    assert summary["1"]["checked_steps"] == 12 and summary["8"]["checked_steps"] == 12
    assert summary["8"]["mean_pairs"] > 0


def test_workload_shape_and_prefix_replay() -> None:
    script = load_script()
    rng = np.random.default_rng(0)
    seqs = script.make_sequences(rng, 300, 2048)
    assert len(seqs) == len({tuple(q) for q in seqs}) == 300
    assert all(1 <= len(q) <= 6 and all(0 <= t < 2048 for t in q) for q in seqs)
    streams = script.make_streams(rng, seqs, 4, 50, 2048)
    assert streams.shape == (50, 4) and streams.dtype == np.int64
    masker = script.TokenMasker(seqs, 2048)
    states = np.zeros(4, dtype=np.uint32)
    deep = 0
    for step in streams:
        masker.advance(states, step)
        deep += int((states != 0).sum())
    assert deep > 50  # replayed prefixes keep rows away from the root
