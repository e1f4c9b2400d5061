"""The shipped ONNX classifiers on the CUDA execution provider: is CUDA really used, how fast.

Self-contained: needs numpy and onnxruntime (CUDA figures need onnxruntime-gpu, the ``[gpu]``
extra); it reads the model files from this checkout and no checkstream import is needed.

    python3 benches/gpu/onnx_cuda.py     # JSON summary on stdout, also $OUT/onnx_cuda.json if set

onnxruntime falls back to the CPU provider *silently* when the CUDA provider cannot load, so the
check does not trust the request: it reads ``session.get_providers()`` and, with profiling on,
counts which provider every executed node ran on. If onnxruntime has no CUDA provider at all
(CPU build), it says so and records CPU figures only. Then, per provider, it times one
``session.run`` of the static-embedding heads (``static_heads.onnx``) on token windows of 16 and
64 ids at batch 1, 8, 32 and 64 (p50 / p99, ms), and the string-input toxicity model (whose
string operators exist only on CPU, so CUDA cannot take them; its placement is reported).
Runs in well under 60 s.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "python" / "checkstream" / "classifiers" / "models"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def nvidia_smi() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or out.stderr.strip() or None


def placement(ort: Any, model: Path, providers: list[str], feeds: dict[str, Any]) -> dict[str, Any]:
    """Run once with profiling and count executed nodes per provider."""
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(str(model), opts, providers=providers)
        sess.run(None, feeds)
        sess.run(None, feeds)
        path = sess.end_profiling()
        events = json.loads(Path(path).read_text())
    counts: dict[str, int] = {}
    for ev in events:
        args = ev.get("args") or {}
        if (
            ev.get("cat") == "Node"
            and "provider" in args
            and ev.get("name", "").endswith("_kernel_time")
        ):
            counts[args["provider"]] = counts.get(args["provider"], 0) + 1
    return {"session_providers": sess.get_providers(), "executed_nodes_by_provider": counts}


def timed(sess: Any, feeds: dict[str, Any], iters: int) -> dict[str, float]:
    for _ in range(20):
        sess.run(None, feeds)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return {
        "p50_ms": times[len(times) // 2] / 1e6,
        "p99_ms": times[max(0, int(len(times) * 0.99) - 1)] / 1e6,
    }


def main() -> int:
    report: dict[str, Any] = {
        "script": "benches/gpu/onnx_cuda.py",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "nvidia_smi": nvidia_smi(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        report["verdict"] = f"cannot run: {exc} (install numpy and onnxruntime-gpu)"
        return finish(report, 2)
    report["onnxruntime"] = ort.__version__
    report["available_providers"] = ort.get_available_providers()
    static, tox = MODELS / "static_heads.onnx", MODELS / "toxicity_profanity.onnx"
    if not static.is_file():
        report["verdict"] = f"model missing: {static}"
        return finish(report, 2)
    cuda_built = CUDA in report["available_providers"]
    if cuda_built and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # loads CUDA/cuDNN from the nvidia-* wheels when present
        except Exception as exc:
            report["preload_dlls_error"] = repr(exc)

    rng = np.random.default_rng(0)

    def token_feeds(batch: int, seq: int) -> dict[str, Any]:
        ids = rng.integers(1000, 30000, size=(batch, seq), dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    provider_sets = [[CPU]]
    if cuda_built:
        provider_sets.insert(0, [CUDA, CPU])
    report["static_heads"] = {}
    cuda_really_used = False
    for providers in provider_sets:
        label = providers[0]
        info = placement(ort, static, providers, token_feeds(8, 64))
        entry: dict[str, Any] = dict(info)
        if label == CUDA:
            cuda_really_used = (
                info["session_providers"][0] == CUDA
                and info["executed_nodes_by_provider"].get(CUDA, 0) > 0
            )
            entry["cuda_really_used"] = cuda_really_used
            if not cuda_really_used:
                entry["note"] = "CUDA requested, onnxruntime fell back to CPU (silent fallback)"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(static), opts, providers=providers)
        for seq in (16, 64):
            for batch in (1, 8, 32, 64):
                entry[f"seq{seq}_batch{batch}"] = timed(sess, token_feeds(batch, seq), 300)
        report["static_heads"][label] = entry

    texts = np.array(["you are a complete idiot and this is rubbish"] * 8, dtype=object).reshape(
        -1, 1
    )
    report["toxicity"] = {}
    for providers in provider_sets:
        info = placement(ort, tox, providers, {"text": texts})
        sess = ort.InferenceSession(str(tox), providers=providers)
        info["batch8"] = timed(sess, {"text": texts}, 300)
        report["toxicity"][providers[0]] = info

    if not cuda_built:
        report["verdict"] = (
            "only the CPU execution provider exists: this onnxruntime build has no CUDA provider "
            f"(available: {report['available_providers']}); install checkstream[gpu] "
            "(onnxruntime-gpu) for CUDA figures"
        )
        code = 1
    elif cuda_really_used:
        report["verdict"] = "CUDA execution provider verified: static_heads nodes executed on CUDA"
        code = 0
    else:
        report["verdict"] = "CUDA provider compiled in but NOT used (silent fallback to CPU)"
        code = 1
    return finish(report, code)


def finish(report: dict[str, Any], code: int) -> int:
    text = json.dumps(report, indent=2, default=str)
    print(text)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "onnx_cuda.json").write_text(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
