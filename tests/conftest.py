# tests/sidecar/ needs torch and vLLM: it runs in its own venv (scripts/test_sidecar.sh).
collect_ignore = ["sidecar"]
