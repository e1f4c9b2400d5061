"""Authorising a request from its credentials: the bearer token and, under mutual TLS, the client
certificate (see :mod:`checkstream.control.auth` for the rules).

Routes call ``access.admin()``, ``access.node(node_id)`` or ``access.reader()``; a refusal raises
:class:`~checkstream.control.auth.AuthError`, which the app turns into one 401/403 answer
(:func:`auth_error_response`), so no route can forget to return it.
"""

from __future__ import annotations

from quart import Response, request

from checkstream.control.auth import AuthError, Principal, Tokens
from checkstream.control.responses import error_response
from checkstream.control.tls import peer_node_ids

__all__ = ["Access", "auth_error_response"]

BROWSER_PAGES = frozenset({"/fleet"})


class Access:
    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    def admin(self) -> Principal:
        return self.tokens.admin(request.headers.get("Authorization"))

    def node(self, node_id: str) -> Principal:
        return self.tokens.node(request.headers.get("Authorization"), node_id,
                                peer_node_ids(request.scope))

    def reader(self) -> Principal:
        return self.tokens.reader(request.headers.get("Authorization"),
                                  peer_node_ids(request.scope))


def auth_error_response(exc: AuthError) -> Response:
    if exc.status == 403:
        return error_response(403, "forbidden", str(exc))
    resp = error_response(401, "unauthorized", str(exc))
    # Browser pages offer Basic auth, so that a browser prompts for the admin token.
    scheme = 'Basic realm="checkstream"' if request.path in BROWSER_PAGES else "Bearer"
    resp.headers["WWW-Authenticate"] = scheme
    return resp
