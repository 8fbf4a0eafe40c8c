"""Run the real proxy (`cordon.proxy.server.serve`) in a background event loop for tests.

    with running_proxy([up.route()], secrets={"CORDON_TEST_SECRET": SECRET}) as px:
        px.port, px.url          # proxy URL with the token: http://cordon:<token>@127.0.0.1:<port>
        px.ca_file               # cordon's throwaway CA (trust it client-side)
        px.env()                 # HTTPS_PROXY/https_proxy/CA variables for subprocess clients
        px.stats                 # the ProxyStats the proxy updates

Works from sync tests, async tests and subprocess clients alike (the proxy has
its own thread and loop, like tests/upstream.py's servers).
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyio.from_thread import start_blocking_portal

from cordon.core import certs
from cordon.core.model import Policy, Route, Secret
from cordon.proxy.auth import ProxyAuth
from cordon.proxy.forward import Timeouts
from cordon.proxy.server import ProxySettings, serve
from cordon.proxy.tls import LeafIssuer

SECRET = "sk-real-SECRET-0123456789abcdef"
PLACEHOLDER = "dummy-replaced-by-cordon"
TOKEN = "test-proxy-token-6f1c2a"


class DictResolver:
    """A resolver over a mapping env-var -> value (routes made by UpstreamServer.route use env specs)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls = 0

    def resolve(self, route: Route) -> Secret:
        from cordon.core.errors import SecretError

        self.calls += 1
        var = route.auth.secret.var or ""
        if var not in self.values:
            raise SecretError(f"route '{route.name}': no secret in environment variable {var}",
                              f"export {var}")
        return Secret(self.values[var])

    def invalidate(self, route_name: str | None = None) -> None:
        return None


@dataclass
class RunningProxy:
    port: int
    ca: certs.CA
    ca_file: Path
    token: str | None
    settings: ProxySettings
    resolver: Any
    _tmp: Path = field(repr=False, default=Path())
    portal: Any = field(repr=False, default=None)   # the proxy's event loop (e.g. to count its tasks)

    @property
    def stats(self) -> Any:
        return self.settings.stats

    @property
    def url(self) -> str:
        if self.token:
            return f"http://cordon:{self.token}@127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    @property
    def bare_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bundle(self, *extra: Path) -> Path:
        """A PEM file with cordon's CA plus `extra` CA files (for clients that replace roots)."""
        p = self._tmp / f"bundle-{len(list(self._tmp.iterdir()))}.pem"
        p.write_bytes(self.ca.cert_pem + b"".join(e.read_bytes() for e in extra))
        return p

    def env(self, *, ca_file: Path | None = None) -> dict[str, str]:
        """os.environ plus proxy and CA variables pointing at this proxy."""
        ca = str(ca_file or self.ca_file)
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        env.update({"HTTPS_PROXY": self.url, "https_proxy": self.url, "HTTP_PROXY": self.url,
                    "http_proxy": self.url, "NO_PROXY": "", "no_proxy": "",
                    "CURL_CA_BUNDLE": ca, "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca,
                    "NODE_EXTRA_CA_CERTS": ca})
        return env


@contextmanager
def running_proxy(routes: Sequence[Route], *, secrets: dict[str, str] | None = None,
                  token: str | None = TOKEN, policy: Policy | None = None,
                  timeouts: Timeouts | None = None, upstream_ca_file: str | None = None,
                  resolver: Any = None, secrets_gen_file: Path | None = None,
                  logins: Any = None, config: Any = None, auth: Any = None) -> Iterator[RunningProxy]:
    """`auth`: the proxy's ProxyAuth (default: `token` alone)."""
    ca = certs.create_ca("cordon test CA")
    tmp = Path(tempfile.mkdtemp(prefix="cordon-proxy-test-"))
    ca_file = tmp / "cordon-ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    values = secrets if secrets is not None else {"CORDON_TEST_SECRET": SECRET}
    res = resolver if resolver is not None else DictResolver(dict(values))
    settings = ProxySettings(routes=tuple(routes), issuer=LeafIssuer(ca), resolver=res,
                             auth=auth if auth is not None else ProxyAuth.single(token) if token else None,
                             policy=policy or Policy(), upstream_ca_file=upstream_ca_file,
                             secrets_gen_file=secrets_gen_file, timeouts=timeouts or Timeouts(),
                             logins=logins, config=config)
    with start_blocking_portal("asyncio") as portal:
        fut, port = portal.start_task(serve, settings)
        try:
            yield RunningProxy(port=port, ca=ca, ca_file=ca_file, token=token, settings=settings,
                               resolver=res, _tmp=tmp, portal=portal)
        finally:
            fut.cancel()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


def read_to_eof(s: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything `s` receives until the peer closes (or resets, or `timeout` passes without a byte)."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    return out
