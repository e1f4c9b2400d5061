"""Policy loading: every load error names file, line, rule and field; nothing is skipped."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from checkstream.classifiers.registry import ClassifierRegistry
from checkstream.classifiers.rules import PatternClassifier
from checkstream.policy import PolicyError, load_policy_set
from checkstream.policy.loader import load_policy_text
from checkstream.policy.policyset import PatternLeaf


def registry() -> ClassifierRegistry:
    clf = PatternClassifier(
        name="toxicity", labels=("toxic",), version="t1", patterns={"toxic": ("idiot",)}
    )
    return ClassifierRegistry({"toxicity": clf}, {"toxicity_detector": "toxicity"})


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> PolicyError:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy_set(path, registry=registry())
    return info.value


HEAD = """
name: t
version: "1"
rules:
"""


def test_valid_file_with_every_trigger_and_shorthand(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("# comment\nalpha\n\nbeta\n", encoding="utf-8")
    path = write(
        tmp_path,
        HEAD
        + """
      - name: all-kinds
        priority: 5
        trigger:
          all:
            - any:
                - phrases: [one, two]
                - phrases: {file: words.txt, whole_word: false}
                - pattern: 'x\\d+'
                - pattern: {regex: 'y+', ignore_case: true}
            - not: {pii: [EMAIL]}
            - context: {tenant: acme, metadata: {segment: [retail, "vip-*"]}}
        actions: [log, {audit: {category: c, severity: low}}]
      - name: clf
        trigger: {classifier: {name: toxicity_detector, label: toxic, threshold: 0.7}}
        actions: [redact]
    """,
    )
    pset = load_policy_set(path, registry=registry())
    assert [r.name for r in pset.rules] == ["all-kinds", "clf"]
    assert set(pset.phrases) == {"one", "two", "alpha", "beta"}
    assert pset.rules[0].phases == {"ingress", "midstream", "egress"}
    # redact cannot act at egress, so a rule without explicit phases drops that phase
    assert pset.rules[1].phases == {"ingress", "midstream"}
    assert len(pset.version) == 64


@pytest.mark.parametrize(
    ("body", "marker", "rule", "field", "message"),
    [
        (
            """
      - name: r1
        trigger: {phrases: []}
        actions: [log]
""",
            "{phrases: []}",
            "r1",
            "trigger.phrases",
            "empty phrase list",
        ),
        (
            """
      - name: r1
        trigger: {pattern: "a(b"}
        actions: [log]
""",
            "a(b",
            "r1",
            "trigger.pattern",
            "bad regex",
        ),
        (
            """
      - name: r1
        trigger:
          pattern: "a*"
        actions: [log]
""",
            "a*",
            "r1",
            "trigger.pattern",
            "matches the empty string",
        ),
        (
            """
      - name: r1
        trigger:
          classifier: {name: sentiment, label: positive}
        actions: [log]
""",
            "sentiment",
            "r1",
            "trigger.classifier.name",
            "unknown classifier 'sentiment'",
        ),
        (
            """
      - name: r1
        trigger:
          classifier: {name: toxicity, label: rude}
        actions: [log]
""",
            "rude",
            "r1",
            "trigger.classifier.label",
            "has no label 'rude'",
        ),
        (
            """
      - name: r1
        trigger:
          pii:
            - EMAIL
            - PASSPORT
        actions: [log]
""",
            "PASSPORT",
            "r1",
            "trigger.pii[1]",
            "unknown PII entity type 'PASSPORT'",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x]}
        actions:
          - log
          - explode: {}
""",
            "explode",
            "r1",
            "actions[1]",
            "unknown action 'explode'",
        ),
        (
            """
      - name: r1
        phases: [egress]
        trigger: {phrases: [x]}
        actions:
          - redact: {}
""",
            "redact: {}",
            "r1",
            "actions[0]",
            "'redact' is not allowed in phase 'egress'",
        ),
        (
            """
      - name: r1
        phases: [midstream]
        trigger: {phrases: [x]}
        actions:
          - add_system_prompt: {text: hi}
""",
            "add_system_prompt",
            "r1",
            "actions[0]",
            "'add_system_prompt' is not allowed in phase 'midstream'",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x]}
        actions: [stop, {inject_disclaimer: {text: t}}]
""",
            "actions: [stop",
            "r1",
            "actions",
            "share no phase",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x], pattern: y}
        actions: [log]
""",
            "trigger:",
            "r1",
            "trigger",
            "exactly one of",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x]}
        actions: [log]
        priorty: 3
""",
            "priorty",
            "r1",
            "priorty",
            "unknown field 'priorty'",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x]}
        actions:
          - stop: {status: 200}
""",
            "status: 200",
            "r1",
            "actions[0].stop.status",
            "greater than or equal to 400",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x]}
        actions: [log]
      - name: r1
        trigger: {phrases: [y]}
        actions: [log]
""",
            "LAST:name: r1",
            "r1",
            "name",
            "duplicate rule name",
        ),
        (
            """
      - name: r1
        trigger: {phrases: {file: missing.txt}}
        actions: [log]
""",
            "missing.txt",
            "r1",
            "trigger.phrases.file",
            "cannot read phrase file",
        ),
        (
            """
      - name: r1
        trigger: {context: {}}
        actions: [log]
""",
            "context",
            "r1",
            "trigger.context",
            "needs at least one of",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x]}
""",
            "name: r1",
            "r1",
            "actions",
            "missing required field 'actions'",
        ),
        (
            """
      - name: r1
        phases: [midstream]
        roles: [user]
        trigger: {phrases: [x]}
        actions: [log]
""",
            "roles",
            "r1",
            "roles",
            "roles only apply to the ingress phase",
        ),
        (
            """
      - name: r1
        trigger: {pattern: 'x+'}
        actions: [stop]
        timeout_ms: 0
""",
            "timeout_ms",
            "r1",
            "timeout_ms",
            "greater than or equal to 0.1",
        ),
        (
            """
      - name: r1
        trigger: {pattern: 'x+'}
        timeout_ms: 5000
        actions: [stop]
""",
            "timeout_ms",
            "r1",
            "timeout_ms",
            "less than or equal to 1000",
        ),
        (
            """
      - name: r1
        trigger: {pattern: 'x+'}
        timeout_ms: true
        actions: [stop]
""",
            "timeout_ms",
            "r1",
            "timeout_ms",
            "not a boolean",
        ),
        (
            """
      - name: r1
        trigger: {pattern: 'x+'}
        actions: [stop]
        fail_mode: maybe
""",
            "fail_mode",
            "r1",
            "fail_mode",
            "'open' or 'closed'",
        ),
        (
            """
      - name: r1
        trigger: {phrases: [x]}
        fail_mode: open
        actions: [log]
""",
            "fail_mode",
            "r1",
            "fail_mode",
            "applies to pattern triggers and this rule has none",
        ),
        (
            """
      - name: r1
        trigger:
          classifier: {name: toxicity, label: toxic}
        timeout_ms: 20
        actions: [log]
""",
            "timeout_ms",
            "r1",
            "timeout_ms",
            "applies to pattern triggers and this rule has none",
        ),
    ],
)
def test_each_load_error_names_file_line_rule_field(
    tmp_path: Path, body: str, marker: str, rule: str, field: str, message: str
) -> None:
    err = load_error(tmp_path, HEAD + body)
    lines = (tmp_path / "p.yaml").read_text(encoding="utf-8").splitlines()
    last = marker.startswith("LAST:")
    marker = marker.removeprefix("LAST:")
    found = [n for n, text in enumerate(lines, 1) if marker in text]
    line = found[-1] if last else found[0]
    assert err.file == str(tmp_path / "p.yaml")
    assert (err.line, err.rule, err.field) == (line, rule, field), str(err)
    assert message in err.message
    assert str(err).startswith(f"{tmp_path / 'p.yaml'}:{line}: rule '{rule}': field '{field}': ")


def test_file_level_errors(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: t\nversion: '1'\nrules:\n  - name: a\n    name: b\n")
    assert (err.line, "duplicate key 'name'") == (5, err.message)
    err = load_error(tmp_path, "name: t\nversion: '1'\nrules: [\n")
    assert err.line is not None and "invalid YAML" in err.message
    err = load_error(tmp_path, "name: t\nversion: '1'\nrules: []\n")
    assert err.field == "rules" and err.line == 3
    err = load_error(tmp_path, "- just a list\n")
    assert "mapping" in err.message
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy_set(tmp_path / "nope.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PolicyError, match="no policy files"):
        load_policy_set(empty)


def test_set_level_conflicts(tmp_path: Path) -> None:
    rule = "rules:\n  - name: r\n    trigger: {phrases: [x]}\n    actions: [log]\n"
    write(tmp_path, "name: a\nversion: '1'\n" + rule, "a.yaml")
    write(tmp_path, "name: a\nversion: '1'\n" + rule, "b.yaml")
    with pytest.raises(PolicyError, match="used by two files") as info:
        load_policy_set(tmp_path)
    assert info.value.file == str(tmp_path / "b.yaml")
    write(tmp_path, "name: b\nversion: '1'\ndefaults: {leetspeak: true}\n" + rule, "b.yaml")
    with pytest.raises(PolicyError, match="leetspeak") as info:
        load_policy_set(tmp_path)
    assert info.value.field == "defaults.leetspeak"


def test_cases_files_in_a_directory_are_not_policies(tmp_path: Path) -> None:
    write(tmp_path, HEAD + "  - name: r\n    trigger: {phrases: [x]}\n    actions: [log]\n")
    write(tmp_path, "cases: []\n", "cases.yaml")
    assert [p.name for p in load_policy_set(tmp_path).files] == ["t"]


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    body = HEAD + "  - name: r\n    trigger: {phrases: [x]}\n    actions: [log]\n"
    v1 = load_policy_text(body).version
    assert load_policy_text("# a comment\n" + body).version == v1  # same content, same version
    assert load_policy_text(body.replace("[x]", "[y]")).version != v1
    (tmp_path / "w.txt").write_text("alpha\n", encoding="utf-8")
    file_body = HEAD + "  - name: r\n    trigger: {phrases: {file: w.txt}}\n    actions: [log]\n"
    v2 = load_policy_text(file_body, base_dir=tmp_path).version
    (tmp_path / "w.txt").write_text("beta\n", encoding="utf-8")
    assert load_policy_text(file_body, base_dir=tmp_path).version != v2  # phrase files count


def test_priority_orders_rules_then_file_order() -> None:
    pset = load_policy_text(
        HEAD
        + """
      - {name: low, priority: -1, trigger: {phrases: [a]}, actions: [log]}
      - {name: first, trigger: {phrases: [a]}, actions: [log]}
      - {name: high, priority: 10, trigger: {phrases: [a]}, actions: [log]}
      - {name: second, trigger: {phrases: [a]}, actions: [log]}
    """
    )
    assert [r.name for r in pset.rules] == ["high", "first", "second", "low"]
    assert len(pset.phrases) == 1  # one automaton entry, shared by four rules


@pytest.mark.parametrize(
    ("defaults", "field", "message"),
    [
        ("defaults: {timeout_ms: -1}", "defaults.timeout_ms", "greater than or equal to 0.1"),
        ("defaults: {timeout_ms: soon}", "defaults.timeout_ms", "valid number"),
        ("defaults: {fail_mode: shut}", "defaults.fail_mode", "'open' or 'closed'"),
    ],
)
def test_scan_limit_defaults_are_validated(
    tmp_path: Path, defaults: str, field: str, message: str
) -> None:
    text = f"name: t\nversion: '1'\n{defaults}\n" + "rules:\n  - name: r\n"
    text += "    trigger: {pattern: 'x+'}\n    actions: [log]\n"
    err = load_error(tmp_path, text)
    assert (err.line, err.rule, err.field) == (3, None, field), str(err)
    assert message in err.message


def test_pattern_scan_limits_reach_the_compiled_leaves() -> None:
    pset = load_policy_text(
        """
name: t
version: "1"
defaults: {timeout_ms: 2.5, fail_mode: open}
rules:
  - {name: inherits, trigger: {pattern: 'a+'}, actions: [log]}
  - name: own
    timeout_ms: 40
    fail_mode: closed
    trigger:
      all:
        - pattern: 'b+'
        - not: {pattern: 'c+'}
    actions: [log]
"""
    )
    leaves = {leaf.source: leaf for leaf in pset.leaves if isinstance(leaf, PatternLeaf)}
    a, b, c = leaves["a+"], leaves["b+"], leaves["c+"]
    assert (a.timeout_s, a.fail_mode, a.match_on_timeout) == (0.0025, "open", False)
    assert (b.timeout_s, b.fail_mode, b.match_on_timeout) == (0.04, "closed", True)
    # Under `not`, counting as a match makes the rule *not* fire: closed means no match there.
    assert (c.timeout_s, c.fail_mode, c.match_on_timeout) == (0.04, "closed", False)
    assert (b.rule, b.policy) == ("own", "t")
    plain = load_policy_text(HEAD + "  - {name: r, trigger: {pattern: 'x+'}, actions: [log]}\n")
    (leaf,) = plain.leaves
    assert isinstance(leaf, PatternLeaf)
    assert (leaf.timeout_s, leaf.fail_mode) == (0.005, "closed")  # 5 ms, fail closed
