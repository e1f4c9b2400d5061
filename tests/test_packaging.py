"""The installed package finds every resource it ships, through ``importlib.resources`` (the way
a wheel install sees it): replay recordings, the shipped policy packs (the demo and the proxy's
default load them from the package), classifier configs and the model/tokenizer files they name,
the typing stubs. Builds nothing: it checks whatever ``checkstream`` is importable (run it in a
venv with the wheel installed to check the wheel; ``maturin build`` then ``pip install``)."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest
import yaml

import checkstream
from checkstream.proxy.replay import load_recordings
from checkstream.proxy.runtime import default_policy_paths, shipped_policy_packs

PACKAGE = resources.files("checkstream")
PACKS = ("default", "fca-consumer-duty", "pii-strict", "prompt-injection")
RECORDINGS = ("customer-record", "injection-echo", "investment-advice", "multilingual",
              "secret-key", "tool-call", "two-choices", "weather")
CLASSIFIER_CONFIGS = ("classifiers.yaml", "classifiers_minilm.yaml", "classifiers_presidio.yaml")
CHECKOUT = Path(__file__).resolve().parents[1]


def test_typing_markers_ship() -> None:
    assert (PACKAGE / "py.typed").is_file()
    stub = PACKAGE / "_core.pyi"
    assert stub.is_file() and "class HoldbackBuffer" in stub.read_text(encoding="utf-8")


def test_replay_recordings_ship() -> None:
    data = PACKAGE / "proxy" / "replay_data"
    names = sorted(p.name for p in data.iterdir() if p.name.endswith(".json"))
    assert names == sorted(f"{r}.json" for r in RECORDINGS)
    assert set(load_recordings()) == set(RECORDINGS)  # the demo's loader reads the same files


@pytest.mark.parametrize("pack", PACKS)
def test_policy_packs_ship_inside_the_package(pack: str) -> None:
    folder = PACKAGE / "policies" / pack
    for name in ("policy.yaml", "cases.yaml"):
        assert (folder / name).is_file(), f"{pack}/{name} is not in the package"
    policy = yaml.safe_load((folder / "policy.yaml").read_text(encoding="utf-8"))
    assert policy["name"] == pack and policy["rules"]


def test_default_and_demo_packs_resolve_to_the_package() -> None:
    pkg = Path(checkstream.__file__).resolve().parent
    (default,) = default_policy_paths()
    assert default == (pkg / "policies" / "default").resolve() or default == pkg / "policies" / \
        "default"
    assert [p.name for p in shipped_policy_packs()] == list(PACKS)


def _files_named(config: Traversable) -> list[str]:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    out = []
    for spec in (data.get("classifiers") or {}).values():
        for key in ("model", "tokenizer", "head"):
            value = spec.get(key) if isinstance(spec, dict) else None
            # "pkg:<dist>/..." files come from an optional extra's own wheel, not ours.
            if isinstance(value, str) and not value.startswith("pkg:"):
                out.append(value)
    return out


@pytest.mark.parametrize("config", CLASSIFIER_CONFIGS)
def test_classifier_configs_and_their_models_ship(config: str) -> None:
    folder = PACKAGE / "classifiers"
    cfg = folder / config
    assert cfg.is_file()
    named = _files_named(cfg)
    if config == "classifiers.yaml":
        assert any(n.endswith(".onnx") for n in named)
        assert any("tokenizer" in n for n in named)
    for rel in named:
        target = folder.joinpath(*rel.split("/"))
        assert target.is_file(), f"{config} names {rel}, which is not in the package"
    manifest = json.loads((folder / "models" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest


@pytest.mark.skipif(not (CHECKOUT / "pyproject.toml").exists(), reason="not a source checkout")
def test_packs_are_one_copy_in_git_and_included_in_the_wheel() -> None:
    link = CHECKOUT / "python" / "checkstream" / "policies"
    assert link.is_symlink() and link.resolve() == (CHECKOUT / "policies").resolve()
    include = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["maturin"][
        "include"]
    patterns = [i["path"] if isinstance(i, dict) else i for i in include]
    # maturin's source walk skips symlinked folders; an include glob goes through them.
    assert "python/checkstream/policies/**/*.yaml" in patterns
    assert "python/checkstream/**/*.onnx" in patterns
