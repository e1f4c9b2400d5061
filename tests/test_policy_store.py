"""Hot reload: atomic swaps under concurrent use; a bad edit keeps the old set; watch, interval."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from checkstream.engine import Guard, RequestContext
from checkstream.policy import PolicyError, PolicyStore

CTX = RequestContext("r", "t", "/v1/chat/completions", "m", {})


def policy(word: str, n_rules: int = 1) -> str:
    rules = "".join(
        f"  - name: r{i}\n    trigger: {{phrases: [{word}{i}]}}\n"
        f"    actions: [{{redact: {{replacement: '<{word}>'}}}}]\n"
        for i in range(n_rules)
    )
    return f"name: p\nversion: '{word}'\nrules:\n{rules}"


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_reload_swaps_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(policy("alpha"), encoding="utf-8")
    swapped: list[str] = []
    errors: list[PolicyError] = []
    store = PolicyStore(path, on_swap=lambda s: swapped.append(s.version), on_error=errors.append)
    first = store.current
    result = store.reload()
    assert (result.ok, result.changed, result.version) == (True, False, first.version)

    path.write_text(policy("beta"), encoding="utf-8")
    result = store.reload()
    assert result.ok and result.changed and store.current.version != first.version
    assert swapped == [store.current.version]

    path.write_text(policy("gamma").replace("phrases: [gamma0]", "phrases: []"), encoding="utf-8")
    result = store.reload()
    assert not result.ok and not result.changed
    assert result.version == swapped[-1]  # the old set keeps serving
    assert result.error is not None and "empty phrase list" in result.error
    assert store.last_error is errors[0] and store.failures == 1
    assert "p.yaml:5" in str(errors[0])


def test_first_load_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        PolicyStore(tmp_path / "missing.yaml")


def test_no_request_sees_a_half_loaded_set(tmp_path: Path) -> None:
    """Readers check output against the current set while a writer keeps swapping sets of
    different sizes; every result must be exactly one set's answer."""
    path = tmp_path / "p.yaml"
    words = ["alpha", "beta"]
    path.write_text(policy("alpha", 40), encoding="utf-8")
    store = PolicyStore(path)
    stop = threading.Event()
    bad: list[str] = []
    checked = [0]

    def reader() -> None:
        while not stop.is_set():
            pset = store.current  # one reference per request
            word = pset.files[0].version
            text = f"x {word}7 y {word}39 z"
            out = Guard(pset).check_output(text, CTX).text
            if out != f"x <{word}> y <{word}> z" or len(pset.rules) != 40:
                bad.append(out)
            checked[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(30):
        path.write_text(policy(words[(i + 1) % 2], 40), encoding="utf-8")
        assert store.reload().ok
    stop.set()
    for t in threads:
        t.join()
    assert bad == [] and checked[0] > 0 and store.reloads == 30


def test_stream_in_flight_keeps_its_set(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(policy("alpha"), encoding="utf-8")
    store = PolicyStore(path)
    sg = Guard(store.current).stream(CTX, holdback=0)
    text = sg.feed("say alpha0 ").text
    path.write_text(policy("beta"), encoding="utf-8")
    store.reload()
    text += sg.feed("and beta0 and alpha0").text + sg.finish().text
    assert text == "say <alpha> and beta0 and <alpha>"
    assert sg.policy_version != store.current.version


def test_file_watch_reloads_and_bad_edit_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(policy("alpha"), encoding="utf-8")
    store = PolicyStore(path)
    v1 = store.current.version
    store.start(interval_s=None, watch=True)
    try:
        time.sleep(0.3)  # let the watcher start
        path.write_text(policy("beta"), encoding="utf-8")
        assert wait_for(lambda: store.current.version != v1)
        v2 = store.current.version
        path.write_text("name: p\nversion: '3'\nrules: [oops\n", encoding="utf-8")
        assert wait_for(lambda: store.last_error is not None)
        assert store.current.version == v2
    finally:
        store.stop()


def test_interval_reload(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(policy("alpha"), encoding="utf-8")
    with PolicyStore(path) as store:
        v1 = store.current.version
        store.start(interval_s=0.05, watch=False)
        path.write_text(policy("beta"), encoding="utf-8")
        assert wait_for(lambda: store.current.version != v1)
    with pytest.raises(ValueError, match="positive"):
        PolicyStore(path).start(interval_s=0)
