"""``checkstream proxy`` and ``checkstream demo``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "proxy", help="serve the OpenAI/Anthropic-compatible guardrail proxy",
        description="Serve the guardrail proxy on Hypercorn (config.yaml as in the deployment "
        "spec; BACKEND_URL, OPENAI_API_KEY and ANTHROPIC_API_KEY override it).")
    p.add_argument("--config", "-c", help="config.yaml (default: $CHECKSTREAM_CONFIG, else "
                   "built-in defaults)")
    p.add_argument("--host", help="override server.host")
    p.add_argument("--port", type=int, help="override server.port")
    p.add_argument("--check", action="store_true",
                   help="validate the config and load the policies, then exit")
    p.set_defaults(func=run_proxy)

    d = subparsers.add_parser(
        "demo", help="show the proxy guarding recorded completions (offline, no API key)",
        description="Start the built-in replay upstream and the proxy on loopback, send sample "
        "requests with the official openai and anthropic SDKs and show raw vs guarded output.")
    d.add_argument("--width", type=int, default=0, help="output width (default: terminal)")
    d.add_argument("--policies", help="policy folder or file (default: the shipped pack)")
    d.set_defaults(func=run_demo)


def run_proxy(args: argparse.Namespace) -> int:
    from checkstream.policy import PolicyError
    from checkstream.proxy.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
        server = cfg.server.model_copy(update={
            k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
        cfg = cfg.model_copy(update={"server": server})
        logging.basicConfig(level=cfg.telemetry.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # httpx logs every upstream request at INFO; the proxy logs what matters itself.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        from checkstream.proxy.app import create_app

        app = create_app(cfg)
    except (ConfigError, PolicyError, ValueError) as exc:
        print(f"checkstream proxy: {exc}", file=sys.stderr)
        return 2
    if args.check:
        state = app.extensions["checkstream"]
        for name, rt in state.runtimes.items():
            print(f"tenant {name}: backend {rt.tenant.backend.url}, "
                  f"policy set {rt.store.current.version}")
        return 0
    from checkstream.proxy.server import serve

    serve(app, host=cfg.server.host, port=cfg.server.port,
          graceful_timeout=cfg.server.graceful_timeout)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    try:
        from checkstream.proxy.demo import main
    except ImportError as exc:
        print(f"checkstream demo needs the official SDKs ({exc.name} is missing): "
              "pip install 'checkstream[demo]'", file=sys.stderr)
        return 2

    return main(width=args.width or None, policies=args.policies)
