"""ONNX text classifiers: a tokenizer-fed model (``input: tokens``) or a model that takes raw
strings (``input: string``, e.g. a converted scikit-learn TF-IDF pipeline)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from tokenizers import Tokenizer

from checkstream.classifiers.base import Classifier, ClassifierError
from checkstream.classifiers.sessions import Device, get_session, provider_of
from checkstream.classifiers.views import ViewName, text_views

Postprocess = Literal["none", "sigmoid", "softmax"]


def content_hash(*parts: bytes) -> str:
    """Model version: sha256 over the artifact bytes and the settings that change scores."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return "sha256:" + digest.hexdigest()[:16]


def load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    # Shipped tokenizer.json files often pad to a fixed 128 tokens, which makes a 16-token
    # chunk cost as much as a 128-token one: pad a batch only to its longest member.
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


@dataclass
class OnnxClassifier(Classifier):
    model_path: Path = field(default_factory=Path)
    output: str = ""
    output_index: tuple[int, ...] = ()
    postprocess: Postprocess = "none"
    device: Device = "auto"
    threads: int = 1
    # Alternative readings scored with the raw text (see ``views.text_views``); per label the
    # highest score wins, and when it came from another view the scores also carry
    # ``"<label>@<view>"`` (e.g. ``"injection@base64"``) so the decision record says so.
    views: tuple[ViewName, ...] = ()
    _session: ort.InferenceSession | None = field(default=None, repr=False, compare=False)

    def load(self) -> None:
        try:
            self._session = get_session(self.model_path, self.device, self.threads)
        except ClassifierError:
            raise
        except Exception as exc:
            raise ClassifierError(
                f"classifier {self.name!r}: cannot load model {self.model_path}: {exc}"
            ) from exc
        outputs = [o.name for o in self._session.get_outputs()]
        if self.output not in outputs:
            raise ClassifierError(
                f"classifier {self.name!r}: model has no output {self.output!r} (has {outputs})"
            )

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            self.load()
        assert self._session is not None
        return self._session

    @property
    def provider(self) -> str:
        return provider_of(self.session)

    @property
    def offload(self) -> bool:
        return True

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not self.views or not texts:
            return self._score_texts(texts)
        expanded = [text_views(t, self.views) for t in texts]
        flat = [view for views in expanded for _, view in views]
        scored = iter(self._score_texts(flat))
        out: list[dict[str, float]] = []
        for views in expanded:
            best: dict[str, float] = {}
            source: dict[str, str] = {}
            for name, _ in views:
                for label, value in next(scored).items():
                    if label not in best or value > best[label]:
                        best[label], source[label] = value, name
            for label, name in list(source.items()):
                if name != "raw":
                    best[f"{label}@{name}"] = best[label]
            out.append(best)
        return out

    def _score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        raise NotImplementedError

    def _to_scores(self, raw: npt.NDArray[np.float32], n: int) -> list[dict[str, float]]:
        values = np.asarray(raw, dtype=np.float64).reshape(n, -1)
        if self.postprocess == "sigmoid":
            values = 1.0 / (1.0 + np.exp(-values))
        elif self.postprocess == "softmax":
            values = np.exp(values - values.max(axis=1, keepdims=True))
            values /= values.sum(axis=1, keepdims=True)
        picked = values[:, list(self.output_index)]
        # tolist: Python floats for the whole batch in one call (iterating numpy rows and
        # converting each value cost ~1 us per window on the model's thread).
        labels = self.labels
        return [dict(zip(labels, row, strict=True)) for row in picked.tolist()]


@dataclass
class OnnxTokenClassifier(OnnxClassifier):
    """Model inputs ``input_ids`` and ``attention_mask`` (int64) from a ``tokenizers`` file."""

    tokenizer_path: Path = field(default_factory=Path)
    max_tokens: int = 256
    add_special_tokens: bool = True
    # ``pooling: mean`` turns a [batch, tokens, dim] output into L2-normalised sentence
    # vectors; ``head_weights`` [dim, heads] and ``head_bias`` then give one logit per head.
    pooling: Literal["none", "mean"] = "none"
    head_weights: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    head_bias: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    _tokenizer: Tokenizer | None = field(default=None, repr=False, compare=False)

    def load(self) -> None:
        super().load()
        try:
            self._tokenizer = load_tokenizer(self.tokenizer_path, self.max_tokens)
        except Exception as exc:
            raise ClassifierError(
                f"classifier {self.name!r}: cannot load tokenizer {self.tokenizer_path}: {exc}"
            ) from exc
        names = {i.name for i in self.session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= names:
            raise ClassifierError(
                f"classifier {self.name!r}: a tokens model needs inputs input_ids and"
                f" attention_mask, {self.model_path.name} has {sorted(names)}"
            )
        self._feeds_token_types = "token_type_ids" in names

    def _score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        if self._tokenizer is None:
            self.load()
        assert self._tokenizer is not None
        encodings = self._tokenizer.encode_batch(
            list(texts), add_special_tokens=self.add_special_tokens
        )
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        if ids.shape[1] == 0:  # every text empty: keep one padded position
            ids = np.zeros((len(texts), 1), dtype=np.int64)
            mask = np.zeros((len(texts), 1), dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._feeds_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (raw,) = self.session.run([self.output], feeds)
        if self.pooling == "mean":
            m = mask[:, :, None].astype(np.float32)
            mean = (raw * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
            raw = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        if self.head_weights is not None:
            raw = raw @ self.head_weights + (0.0 if self.head_bias is None else self.head_bias)
        return self._to_scores(raw, len(texts))


@dataclass
class OnnxStringClassifier(OnnxClassifier):
    """A model whose single input is a string tensor of shape [N, 1]."""

    def load(self) -> None:
        super().load()
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(string)":
            raise ClassifierError(
                f"classifier {self.name!r}: a string model needs one string input,"
                f" {self.model_path.name} has {[(i.name, i.type) for i in inputs]}"
            )
        self._input = inputs[0].name

    def _score_texts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        feed = np.array(list(texts), dtype=object).reshape(-1, 1)
        (raw,) = self.session.run([self.output], {self._input: feed})
        return self._to_scores(raw, len(texts))
