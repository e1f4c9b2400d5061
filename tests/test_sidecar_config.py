"""Sidecar configuration (no torch or vLLM needed): the spec's file, additional_config, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkstream.cli import main
from checkstream.sidecar.config import SidecarConfigError, engine_options, load_sidecar_config
from checkstream.sidecar.requests import MAX_BAN_PHRASE_CHARS, MAX_BAN_PHRASES, RequestOptions

SPEC_FILE = """
vllm:
  socket: /shared/checkstream.sock
  callbacks: [on_sampling_step, on_token_generated, on_tool_call]
guardrails:
  preventive:
    enabled: true
    logit_masking:
      enabled: true
      banned_tokens_file: banned_tokens.json
    adaptive_decoding:
      enabled: true
      risk_threshold: 0.7
      safe_mode: {temperature: 0.3, top_p: 0.6}
  reactive: {enabled: true, holdback_size: 8, check_interval: 10}
classifiers:
  embedding_mode: true
  models: [toxicity_detector]
policies:
  path: /etc/checkstream/policies
  hot_reload: true
"""


def test_the_specs_sidecar_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sidecar-config.yaml"
    path.write_text(SPEC_FILE)
    config = load_sidecar_config(path)
    masking = config.guardrails.preventive.logit_masking
    assert masking.banned_tokens_file == str(tmp_path / "banned_tokens.json")
    assert config.guardrails.preventive.adaptive_decoding.safe_mode.top_p == 0.6
    assert config.guardrails.reactive.holdback_size == 8
    assert config.policies.path == "/etc/checkstream/policies"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("guardrails: {preventive: {logit_masking: {enabeld: true}}}", "enabeld"),
        ("guardrails: {preventive: {adaptive_decoding: {risk_threshold: -1}}}", "risk_threshold"),
        ("guardrails: {tools: {arguments: {to: {allow: [a]}}}}", "tool.argument"),
        ("- a list", "top level must be a mapping"),
        ("guardrails: [", "invalid YAML"),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SidecarConfigError, match=message):
        load_sidecar_config(path)


def test_additional_config_enables_the_plugin_or_leaves_it_inert(tmp_path: Path) -> None:
    assert engine_options(None) is None
    assert engine_options({"other": 1}) is None
    assert engine_options({"checkstream": {"enabled": False}}) is None
    on = engine_options({"checkstream": True})
    assert on is not None and on.requests == "all"
    path = tmp_path / "sidecar-config.yaml"
    path.write_text("guardrails: {preventive: {logit_masking: {phrases: [kill switch]}}}")
    from_file = engine_options({"checkstream": {"config": str(path), "requests": "opt_in"}})
    assert from_file is not None
    assert from_file.guardrails.preventive.logit_masking.phrases == ("kill switch",)
    with pytest.raises(SidecarConfigError, match="either 'config' or inline"):
        engine_options({"checkstream": {"config": str(path), "guardrails": {}}})
    with pytest.raises(SidecarConfigError, match="requests"):
        engine_options({"checkstream": {"requests": "sometimes"}})
    with pytest.raises(SidecarConfigError, match="must be a mapping"):
        engine_options({"checkstream": "yes"})


def test_request_options_are_validated_with_field_named_errors() -> None:
    opts = RequestOptions.parse(
        {"checkstream": "on", "checkstream_safe_top_p": "0.5", "checkstream_tag": 7, "x": [1]}
    )
    assert opts.switch == "on" and opts.safe_top_p == 0.5 and opts.tag == "7"
    for bad, message in [
        ({"checkstream": "maybe"}, "checkstream must be 'on' or 'off'"),
        ({"checkstream_safe_temperature": 3}, "checkstream_safe_temperature must be"),
        ({"checkstream_risk_threshold": "high"}, "checkstream_risk_threshold must be a number"),
        ({"checkstream_risk_treshold": 1}, "unknown checkstream argument"),
    ]:
        with pytest.raises(ValueError, match=message):
            RequestOptions.parse(bad)


def test_opt_out_is_honoured_only_where_allowed() -> None:
    strict = engine_options({"checkstream": {}})
    lenient = engine_options({"checkstream": {"allow_opt_out": True}})
    opt_in = engine_options({"checkstream": {"requests": "opt_in"}})
    assert strict is not None and lenient is not None and opt_in is not None
    out = RequestOptions.parse({"checkstream": "off"})
    assert out.guarded(strict) and not out.guarded(lenient)
    assert not RequestOptions().guarded(opt_in) and RequestOptions(switch="on").guarded(opt_in)


def test_cli_validate_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "banned_tokens.json").write_text(json.dumps({"phrases": ["x"]}))
    path = tmp_path / "sidecar-config.yaml"
    path.write_text(SPEC_FILE.replace("/etc/checkstream/policies", str(tmp_path / "none")))
    assert main(["sidecar", "validate-config", str(path)]) == 1
    assert "policies.path" in capsys.readouterr().err
    path.write_text(SPEC_FILE.replace("  path: /etc/checkstream/policies\n", ""))
    assert main(["sidecar", "validate-config", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["adaptive_decoding"] is True
    # The spec's embedding_mode is accepted but cannot be honoured: said, not swallowed.
    assert [w.split(":")[0] for w in summary["warnings"]] == ["classifiers.embedding_mode"]
    without = SPEC_FILE.replace("  path: /etc/checkstream/policies\n", "")
    path.write_text(without.replace("embedding_mode: true", "embedding_mode: false"))
    assert main(["sidecar", "validate-config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
    assert main(["sidecar", "validate-config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read sidecar config" in capsys.readouterr().err


def test_checkstream_ban_takes_a_phrase_or_a_flat_list_as_a_sorted_cache_key() -> None:
    one = RequestOptions.parse({"checkstream_ban": "  kill switch "})
    assert one.bans == ("kill switch",)
    many = RequestOptions.parse({"checkstream_ban": ["zeta", "alpha beta", "zeta", " alpha beta"]})
    assert many.bans == ("alpha beta", "zeta")
    assert RequestOptions.parse({"checkstream_ban": ["zeta", "alpha beta"]}).bans == many.bans
    assert RequestOptions.parse({"checkstream_ban": []}).bans == ()
    limit = ["p" * MAX_BAN_PHRASE_CHARS] + [f"phrase {i}" for i in range(MAX_BAN_PHRASES - 1)]
    assert len(RequestOptions.parse({"checkstream_ban": limit}).bans) == MAX_BAN_PHRASES


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([["a", "b"]], r"checkstream_ban\[0\] must be a string \(a flat list of strings\)"),
        (["ok", 3], r"checkstream_ban\[1\] must be a string"),
        (7, "checkstream_ban must be a string or a flat list of strings, got int"),
        ({"a": 1}, "checkstream_ban must be a string or a flat list of strings, got dict"),
        ("   ", "checkstream_ban is empty or whitespace only"),
        (["fine", ""], r"checkstream_ban\[1\] is empty or whitespace only"),
        (
            [f"p{i}" for i in range(MAX_BAN_PHRASES + 1)],
            f"checkstream_ban has {MAX_BAN_PHRASES + 1} phrases; the limit is "
            f"{MAX_BAN_PHRASES} per request",
        ),
        (
            "x" * (MAX_BAN_PHRASE_CHARS + 1),
            f"checkstream_ban is {MAX_BAN_PHRASE_CHARS + 1} characters long; the limit is "
            f"{MAX_BAN_PHRASE_CHARS}",
        ),
    ],
)
def test_bad_checkstream_ban_values_name_the_key_and_the_limit(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RequestOptions.parse({"checkstream_ban": value})


def test_a_request_ban_list_opts_in_and_cannot_be_combined_with_off() -> None:
    opt_in = engine_options({"checkstream": {"requests": "opt_in"}})
    lenient = engine_options({"checkstream": {"allow_opt_out": True}})
    assert opt_in is not None and lenient is not None
    assert RequestOptions.parse({"checkstream_ban": "x y"}).guarded(opt_in)
    assert not RequestOptions.parse({"checkstream_ban": []}).guarded(opt_in)
    assert RequestOptions.parse({"checkstream_ban": "x y"}).guarded(lenient)
    with pytest.raises(ValueError, match="checkstream_ban cannot be combined with checkstream"):
        RequestOptions.parse({"checkstream": "off", "checkstream_ban": "x y"})
