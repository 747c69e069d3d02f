"""`serve`'s bearer token: where it comes from, where it is needed, and who may change the memory.

The token is read from a file (`--token-file`) or the environment variable NOVELTYKIT_SERVE_TOKEN,
never from the command line (where `ps` shows it to every user of the machine). With a token,
every request to /v1/* and /metrics needs `Authorization: Bearer <token>`, else 401 with
`WWW-Authenticate: Bearer`; it is compared in constant time (`hmac.compare_digest`). /healthz, the
page at / and the API docs stay open (the page asks for the token and sends it).

Writes (POST /v1/memory/confirm) always need a token: without one configured they are refused
(403) unless `allow_unauthenticated_writes`. A server on an address other machines can reach
(anything but 127.0.0.0/8, ::1 and localhost) will not start without a token (`check_bind`).

`BearerAuth` is pure ASGI middleware (no web framework imported here).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
import stat
import sys
from pathlib import Path

TOKEN_ENV = "NOVELTYKIT_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
MAKE_TOKEN = ('python -c "import secrets; print(secrets.token_urlsafe(32))" > token.txt; chmod 600 token.txt')
PROTECTED_PREFIXES = ("/v1/", "/metrics")  # need the token when one is set
WRITES = frozenset({("POST", "/v1/memory/confirm")})  # need a token always (where the app has them)


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if not token:
        raise ValueError(f"{where} is empty; make a token with: {MAKE_TOKEN}")
    if any(c.isspace() or not (32 < ord(c) < 127) for c in token):
        raise ValueError(f"{where}: the token must be one word of printable ASCII (it is sent in an HTTP header); "
                         f"make one with: {MAKE_TOKEN}")
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{where}: the token is {len(token)} characters, too short to be secret (at least "
                         f"{MIN_TOKEN_CHARS}); make one with: {MAKE_TOKEN}")
    return token


def read_token(token_file: str | Path | None = None, environ: dict | None = None) -> str | None:
    """The token from `token_file` if given, else from NOVELTYKIT_SERVE_TOKEN, else None. An empty
    or whitespace file (or variable), or a short token, is a ValueError saying how to make one.
    A file that others may read gets a warning on standard error."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ValueError(f"--token-file {path}: no such file; make a token with: {MAKE_TOKEN}") from None
        except (IsADirectoryError, UnicodeDecodeError) as exc:
            raise ValueError(f"--token-file {path}: not a text file ({exc})") from None
        token = _check_token(text, f"--token-file {path}")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(f"noveltykit: warning: {path} can be read by other users; chmod 600 {path}", file=sys.stderr)
        return token
    if TOKEN_ENV in environ:
        return _check_token(environ[TOKEN_ENV], f"the environment variable {TOKEN_ENV}")
    return None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_bind(host: str, token: str | None) -> None:
    """A ValueError, before the model is loaded, for a reachable address without a token."""
    if token is None and not is_loopback(host):
        raise ValueError(
            f"--host {host} can be reached from other machines, and no token is set: anyone who reaches it could "
            f"use the model (and change its memory). Make a token, then serve with it:\n"
            f"  {MAKE_TOKEN}\n  noveltykit serve MODEL --host {host} --token-file token.txt   "
            f"(or set {TOKEN_ENV})\nClients send it as the header 'Authorization: Bearer <token>'. Or serve on "
            "127.0.0.1 (the default) behind a proxy that checks who may come in.")


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def auth_summary(token: str | None, allow_unauthenticated_writes: bool) -> dict:
    """What the model card says: whether a token is needed, and whether writes are open."""
    writes = "token" if token is not None else ("open" if allow_unauthenticated_writes else "refused")
    return {"token": token is not None, "writes": writes}


class BearerAuth:
    """Pure ASGI middleware: the token check (module docstring) before the app sees the request.
    `writes`: the (method, path) pairs the app serves that change its state."""

    def __init__(self, app, token: str | None, allow_unauthenticated_writes: bool = False,
                 writes: frozenset = WRITES):
        self.app, self.token, self.allow_writes = app, token, bool(allow_unauthenticated_writes)
        self.writes = frozenset(writes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if self.token is not None and path.startswith(PROTECTED_PREFIXES):
            given = bearer_token(scope.get("headers") or [])
            if not token_matches(given, self.token):
                detail = ("this server needs a token: send the header 'Authorization: Bearer <token>'" if given is None
                          else "wrong token")
                challenge = 'Bearer realm="noveltykit"' + ("" if given is None else ', error="invalid_token"')
                return await _json(send, 401, detail, [(b"www-authenticate", challenge.encode())])
        elif self.token is None and (method, path.rstrip("/")) in self.writes and not self.allow_writes:
            return await _json(send, 403, "changing the memory needs a token, and this server has none: restart "
                                          "it with --token-file FILE (or NOVELTYKIT_SERVE_TOKEN), or with "
                                          "--allow-unauthenticated-writes to let anyone who reaches it confirm")
        return await self.app(scope, receive, send)


async def _json(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
