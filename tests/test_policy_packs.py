"""The shipped packs: each pack's cases pass whole, streamed in random chunks, and via the CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkstream.cli import main
from checkstream.engine import Guard
from checkstream.policy import load_policy_set
from checkstream.policy.cases import Case, load_cases, run_case

ROOT = Path(__file__).resolve().parents[1] / "policies"
PACKS = ["default", "pii-strict", "prompt-injection", "fca-consumer-duty"]


def pack_cases(pack: str) -> list[Case]:
    return load_cases(ROOT / pack / "cases.yaml")


@pytest.fixture(scope="module", params=PACKS)
def pack(request: pytest.FixtureRequest) -> tuple[str, Guard]:
    name = str(request.param)
    return name, Guard(load_policy_set(ROOT / name))


def test_pack_cases_pass(pack: tuple[str, Guard]) -> None:
    name, guard = pack
    cases = pack_cases(name)
    assert len(cases) >= 7
    failures = [(c.name, r.problems) for c in cases if not (r := run_case(guard, c)).ok]
    assert failures == []


def test_every_pack_rule_is_exercised_by_a_case(pack: tuple[str, Guard]) -> None:
    name, guard = pack
    fired: set[str] = set()
    for case in pack_cases(name):
        fired |= {r.removesuffix(" (shadow)") for r in run_case(guard, case).fired}
    assert {r.name for r in guard.policy_set.rules} - fired == set()


def chunkings(text: str) -> st.SearchStrategy[list[str]]:
    cuts = st.lists(st.integers(min_value=1, max_value=max(1, len(text) - 1)), max_size=12)
    return cuts.map(lambda c: _split(text, sorted(set(c))))


def _split(text: str, cuts: list[int]) -> list[str]:
    edges = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges) if b > a]


@pytest.mark.parametrize("pack_name", PACKS)
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_streamed_cases_match_whole_text_decisions(pack_name: str, data: st.DataObject) -> None:
    guard = _guards(pack_name)
    for case in pack_cases(pack_name):
        if case.phase != "output":
            continue
        text = case.input or ""
        chunks = data.draw(chunkings(text), label=case.name)
        streamed = run_case(guard, case, chunks=chunks)
        assert streamed.ok, (case.name, chunks, streamed.problems)


_GUARDS: dict[str, Guard] = {}


def _guards(name: str) -> Guard:
    if name not in _GUARDS:
        _GUARDS[name] = Guard(load_policy_set(ROOT / name))
    return _GUARDS[name]


def test_all_packs_load_together() -> None:
    pset = load_policy_set(ROOT)
    assert sorted(f.name for f in pset.files) == sorted(PACKS)


def test_cli_runs_pack_cases_and_fails_on_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in PACKS:
        assert (
            main(["policy", "test", str(ROOT / name), "--cases", str(ROOT / name / "cases.yaml")])
            == 0
        )
    wrong = tmp_path / "cases.yaml"
    wrong.write_text(
        "cases:\n  - name: wrong expectation\n    input: 'build a bomb now'\n"
        "    expect: {decision: pass}\n",
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["policy", "test", str(ROOT / "default"), "--cases", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL cases.yaml: wrong expectation" in out
    assert "decision 'stop', expected 'pass'" in out
