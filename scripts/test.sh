#!/usr/bin/env bash
# Sets everything up and runs every check: Rust format/lint/tests, stub check, Python lint/types, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python

echo "== cargo fmt / clippy / test"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

echo "== stub check (_core.pyi against the built module)"
$PY -m mypy.stubtest checkstream._core --mypy-config-file pyproject.toml

echo "== ruff / mypy"
$PY -m ruff check python tests benches
$PY -m mypy

echo "== pytest"
$PY -m pytest -q "$@"
bash scripts/test_sidecar.sh
