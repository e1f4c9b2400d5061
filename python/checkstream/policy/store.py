"""PolicyStore: the current PolicySet, swapped atomically on reload.

A reload builds the new set aside; only a fully loaded set replaces the old reference (one
attribute assignment), so a reader sees the old set or the new one, never a mixture. Streams keep
the set (Guard) they began with. An invalid edit keeps the old set serving and is reported via
``last_error``, the ``on_error`` callback and the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from checkstream.policy.errors import PolicyError
from checkstream.policy.loader import PolicyPaths, RegistryLike, load_policy_set
from checkstream.policy.policyset import PolicySet

log = logging.getLogger("checkstream.policy")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    changed: bool
    version: str  # the version now serving
    error: str | None = None


class PolicyStore:
    def __init__(
        self,
        paths: PolicyPaths,
        *,
        registry: RegistryLike | None = None,
        on_swap: Callable[[PolicySet], None] | None = None,
        on_error: Callable[[PolicyError], None] | None = None,
    ) -> None:
        self._paths = paths
        self._registry = registry
        self._on_swap = on_swap
        self._on_error = on_error
        self._lock = threading.Lock()  # one reload at a time; readers never take it
        self._current = load_policy_set(paths, registry=registry)  # the first load must succeed
        self.last_error: PolicyError | None = None
        self.reloads = 0
        self.failures = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def current(self) -> PolicySet:
        return self._current

    def reload(self) -> ReloadResult:
        with self._lock:
            try:
                fresh = load_policy_set(self._paths, registry=self._registry)
            except PolicyError as exc:
                self.failures += 1
                self.last_error = exc
                log.error(
                    "policy reload failed; still serving %s: %s", self._current.short_version, exc
                )
                if self._on_error is not None:
                    self._on_error(exc)
                return ReloadResult(False, False, self._current.version, str(exc))
            self.last_error = None
            if fresh.version == self._current.version:
                return ReloadResult(True, False, fresh.version)
            self._current = fresh
            self.reloads += 1
            log.info("policy set swapped to %s", fresh.short_version)
        if self._on_swap is not None:
            self._on_swap(fresh)
        return ReloadResult(True, True, fresh.version)

    # ---- background reloading

    def start(self, *, interval_s: float | None = 30.0, watch: bool = True) -> None:
        """Reload on file changes (watchfiles) and/or every ``interval_s`` seconds."""
        if self._threads:
            raise RuntimeError("PolicyStore already started")
        if interval_s is not None:
            if interval_s <= 0:
                raise ValueError("interval_s must be positive")
            self._spawn(self._interval_loop, interval_s)
        if watch:
            self._spawn(self._watch_loop, None)

    def _spawn(self, target: Callable[..., None], arg: float | None) -> None:
        args = () if arg is None else (arg,)
        thread = threading.Thread(
            target=target,
            args=args,
            daemon=True,
            name=f"checkstream-policy-{target.__name__.strip('_')}",
        )
        thread.start()
        self._threads.append(thread)

    def _interval_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.reload()

    def _watch_loop(self) -> None:
        from watchfiles import watch

        items = [self._paths] if isinstance(self._paths, str | Path) else list(self._paths)
        targets = [Path(p) for p in items]
        # Watch directories (editors replace files by rename, which a file watch would miss).
        dirs = sorted({str(p if p.is_dir() else p.parent) for p in targets})
        for _changes in watch(
            *dirs,
            stop_event=self._stop,
            debounce=200,
            step=50,
            yield_on_timeout=False,
            rust_timeout=500,
        ):
            self.reload()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> PolicyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
