"""onnxruntime sessions: created once per (model file, device, threads), provider verified.

onnxruntime falls back to the CPU provider *silently* when CUDA was requested but cannot load
(missing cuBLAS/cuDNN, no GPU): no exception, only a log line. So the provider in use is always
read back from the session, ``device: cuda`` fails loudly when it did not stick, and
``device: auto`` reports what it got.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Literal

import onnxruntime as ort  # type: ignore[import-untyped]

Device = Literal["auto", "cpu", "cuda"]

_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str, str, int], ort.InferenceSession] = {}


class DeviceUnavailableError(RuntimeError):
    """``device: cuda`` was asked for and the CUDA execution provider did not load."""


def cuda_compiled_in() -> bool:
    """CUDA EP compiled into the installed onnxruntime (says nothing about whether it loads)."""
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _requested(device: Device) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if cuda_compiled_in():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def get_session(path: Path, device: Device = "auto", threads: int = 1) -> ort.InferenceSession:
    """A shared session for ``path``; raises ``DeviceUnavailableError`` for an unmet cuda."""
    key = (str(path.resolve()), device, threads)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is not None:
            return session
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # the fallback is reported by us, not as ORT noise
        with warnings.catch_warnings():
            # ORT warns when a requested provider is absent; the check below reports it instead.
            warnings.simplefilter("ignore", UserWarning)
            session = ort.InferenceSession(str(path), options, providers=_requested(device))
        in_use = session.get_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in in_use:
            raise DeviceUnavailableError(
                f"{path.name}: device 'cuda' requested but onnxruntime runs it on {in_use}"
                " (install the [gpu] extra, CUDA 13 and cuDNN 9, and check the GPU is visible)"
            )
        _SESSIONS[key] = session
        return session


def provider_of(session: ort.InferenceSession) -> str:
    """The provider that runs the model's nodes first in priority: what is really in use."""
    providers: list[str] = session.get_providers()
    return providers[0]
