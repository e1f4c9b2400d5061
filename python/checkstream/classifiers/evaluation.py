"""Held-out evaluation of the registry's classifiers against the keyword baseline.

The baseline is the approach the models replace: case-insensitive *substring* keyword lists, as
shipped by guardrails that flag "hello" for "hell". Both run on the same examples in one run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkstream.classifiers.metrics import BinaryMetrics, binary_metrics
from checkstream.classifiers.registry import ClassifierRegistry

KEYWORD_BASELINE: dict[str, tuple[str, ...]] = {
    "toxicity": (
        "fuck", "shit", "idiot", "stupid", "moron", "bitch", "bastard", "ass", "crap", "damn",
        "hell", "cunt", "dick", "kill", "die", "hate", "sex", "loser", "trash",
    ),
    "prompt_injection": (
        "ignore", "disregard", "forget", "system prompt", "jailbreak", "dan", "developer mode",
        "instructions", "pretend", "override", "no restrictions", "bypass",
    ),
    "financial_advice": (
        "invest", "buy", "sell", "pension", "shares", "fund", "isa", "portfolio", "stock",
        "annuity", "bitcoin",
    ),
    "harmful_output": (
        "kill", "bomb", "weapon", "drug", "hate", "sex", "suicide", "attack", "steal", "hack",
        "gun", "poison", "violence",
    ),
}  # fmt: skip


def keyword_score(classifier: str, text: str) -> float:
    lowered = text.lower()
    keywords = KEYWORD_BASELINE[classifier.removesuffix("_minilm")]
    return 1.0 if any(k in lowered for k in keywords) else 0.0


@dataclass(frozen=True)
class EvalSet:
    classifier: str
    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    independent: bool  # True: the model never saw this source in training
    note: str


@dataclass(frozen=True)
class EvalRow:
    classifier: str
    dataset: str
    independent: bool
    model: BinaryMetrics
    baseline: BinaryMetrics
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "classifier": self.classifier,
            "dataset": self.dataset,
            "independent": self.independent,
            "model": self.model.as_dict(),
            "keyword_baseline": self.baseline.as_dict(),
            "note": self.note,
        }


def default_data_dir() -> Path | None:
    # A source checkout: python/checkstream/classifiers/ -> repo root / data.
    candidate = Path(__file__).resolve().parents[3] / "data"
    return candidate if (candidate / "finance_advice.jsonl").is_file() else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"evaluation data missing: {path}")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {exc}") from exc
    return rows


def _set(
    classifier: str,
    name: str,
    rows: Sequence[dict[str, Any]],
    label: str,
    *,
    independent: bool,
    note: str,
    keep: Callable[[dict[str, Any]], bool] = lambda r: True,
) -> EvalSet:
    chosen = [r for r in rows if keep(r)]
    return EvalSet(
        classifier,
        name,
        tuple(r["text"] for r in chosen),
        tuple(int(r[label]) for r in chosen),
        independent,
        note,
    )


def load_eval_sets(data: Path) -> list[EvalSet]:
    finance = _jsonl(data / "finance_advice.jsonl")
    injection = _jsonl(data / "injection_indirect.jsonl")
    classic = _jsonl(data / "injection_classic.jsonl")
    chunks = _jsonl(data / "output_chunks.jsonl")
    heldout = _jsonl(data / "finance_heldout.jsonl")
    bastion = _jsonl(data / "eval" / "bastioncorpus_injections.jsonl")
    harm = _jsonl(data / "eval" / "pyrit_harm_test.jsonl")

    def test(r: dict[str, Any]) -> bool:
        return bool(r.get("split") == "test")

    sets = [
        _set("toxicity", "output_chunks", chunks, "toxicity", independent=True,
             note="project-written 16-64 token chunks incl. Scunthorpe traps"),
        _set("toxicity", "pyrit_harm_test", harm, "label", independent=True,
             note="politely worded harm: outside this model's scope (profanity)"),
        _set("prompt_injection", "injection_indirect:test", injection, "label", independent=False,
             keep=test, note="project-written held-out split"),
        _set("prompt_injection", "injection_classic:test", classic, "label", independent=False,
             keep=lambda r: test(r) and not str(r.get("kind", "")).startswith("obfuscated"),
             note="project-written held-out split: short overrides, role-play, extraction"),
        _set("prompt_injection", "injection_classic:obfuscated", classic, "label",
             independent=False, keep=lambda r: str(r.get("kind", "")).startswith("obfuscated"),
             note="held-out rows rewritten in leetspeak, zero-width, homoglyphs, base64, ROT13,"
                  " reversed or spaced letters; never trained on"),
        _set("prompt_injection", "bastioncorpus (OOD)", bastion, "label", independent=True,
             note="independent corpus, 5 languages, never trained on"),
        _set("prompt_injection", "bastioncorpus EN (OOD)", bastion, "label", independent=True,
             keep=lambda r: r.get("lang") == "en", note="English subset"),
        _set("financial_advice", "finance_advice:test", finance, "label", independent=False,
             keep=test, note="project-written held-out split"),
        _set("financial_advice", "finance_heldout", heldout, "label", independent=True,
             note="separately written, different phrasing"),
        _set("financial_advice", "output_chunks", chunks, "financial_advice", independent=True,
             note="chunk-level output"),
        _set("harmful_output", "pyrit_harm_test", harm, "label", independent=False,
             note="held-out 25% of pyrit's human-scored responses"),
    ]  # fmt: skip
    # The MiniLM tier ([minilm] extra) is evaluated on the same sets when it is loaded.
    tier = [
        EvalSet(s.classifier + "_minilm", s.name, s.texts, s.labels, s.independent, s.note)
        for s in sets
        if s.classifier in ("prompt_injection", "financial_advice")
    ]
    return sets + tier


def evaluate(
    registry: ClassifierRegistry, sets: Sequence[EvalSet], threshold: float | None = None
) -> list[EvalRow]:
    rows = []
    for s in sets:
        if s.classifier not in registry:
            continue
        clf = registry.get(s.classifier)
        scores: list[float] = []
        for lo in range(0, len(s.texts), 64):
            scores.extend(max(d.values()) for d in clf.score(s.texts[lo : lo + 64]))
        base = [keyword_score(s.classifier, t) for t in s.texts]
        rows.append(
            EvalRow(
                s.classifier,
                s.name,
                s.independent,
                binary_metrics(
                    list(s.labels), scores, clf.threshold if threshold is None else threshold
                ),
                binary_metrics(list(s.labels), base, 0.5),
                s.note,
            )
        )
    return rows


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def markdown_table(rows: Sequence[EvalRow]) -> str:
    lines = [
        "| classifier | dataset | n (pos) | model P / R / F1 / AUC"
        " | keyword baseline P / R / F1 / AUC |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        m, b = r.model, r.baseline
        lines.append(
            f"| {r.classifier} | {r.dataset} | {m.n} ({m.positives}) | "
            f"{_f(m.precision)} / {_f(m.recall)} / {_f(m.f1)} / {_f(m.roc_auc)} | "
            f"{_f(b.precision)} / {_f(b.recall)} / {_f(b.f1)} / {_f(b.roc_auc)} |"
        )
    return "\n".join(lines)
