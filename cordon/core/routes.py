"""Route lookup and the built-in provider presets.

Pure: host normalisation, matching (exact, case-insensitive, trailing dot
ignored, any port), path-prefix checks and preset definitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cordon.core.model import Auth, Route, SecretSpec
from cordon.core.pathscope import in_scope


def normalize_host(host: str) -> str:
    """Lower-case, strip one trailing dot and IPv6 brackets."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    return h[:-1] if h.endswith(".") else h


def server_name_host(sni: str) -> str:
    """The host part of a TLS server name. RFC 6066 §3 says a bare DNS name, but some clients
    (the `hey` load tester) send `host:port`: a numeric port is dropped, nothing else is."""
    host, sep, port = sni.rpartition(":")
    if sep and host and port.isdigit() and ":" not in host:
        return host
    return sni


def split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    """Split `host:port` (IPv6 in brackets); raise ValueError on garbage."""
    a = authority.strip()
    if a.startswith("["):
        end = a.find("]")
        if end < 0:
            raise ValueError(f"bad authority {authority!r}")
        host, rest = a[1:end], a[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad authority {authority!r}")
        port = int(rest[1:]) if rest else default_port
    elif a.count(":") == 1:
        host, p = a.split(":")
        port = int(p)
    elif ":" in a:
        raise ValueError(f"bad authority {authority!r}")
    else:
        host, port = a, default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad authority {authority!r}")
    return host, port


class RouteTable:
    """Maps a host name to its route in O(1)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._by_host = {normalize_host(r.host): r for r in self.routes}

    def match(self, host: str) -> Route | None:
        return self._by_host.get(normalize_host(host))

    def __len__(self) -> int:
        return len(self.routes)


def injects_on(route: Route, path: str) -> bool:
    """True when the route's credential belongs on this request path (see `pathscope`)."""
    return in_scope(route.paths, path)


@dataclass(frozen=True)
class Preset:
    name: str
    host: str
    header_name: str
    scheme: str | None
    placeholder_env: tuple[str, ...]
    description: str

    def route(self, secret: SecretSpec, name: str | None = None) -> Route:
        return Route(
            name=name or self.name,
            host=self.host,
            auth=Auth(type="header", header_name=self.header_name, scheme=self.scheme,
                      placeholder_env=self.placeholder_env, secret=secret),
        )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("openai", "api.openai.com", "Authorization", "Bearer",
               ("OPENAI_API_KEY", "CODEX_API_KEY"), "OpenAI API (Codex CLI, openai SDKs)"),
        Preset("anthropic", "api.anthropic.com", "x-api-key", None,
               ("ANTHROPIC_API_KEY",), "Anthropic API (Claude Code, anthropic SDKs)"),
        Preset("gemini", "generativelanguage.googleapis.com", "x-goog-api-key", None,
               ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "Google Gemini API"),
        Preset("github", "api.github.com", "Authorization", "Bearer",
               ("GITHUB_TOKEN", "GH_TOKEN"), "GitHub REST API"),
        Preset("openrouter", "openrouter.ai", "Authorization", "Bearer",
               ("OPENROUTER_API_KEY",), "OpenRouter"),
        Preset("mistral", "api.mistral.ai", "Authorization", "Bearer",
               ("MISTRAL_API_KEY",), "Mistral AI API"),
        Preset("groq", "api.groq.com", "Authorization", "Bearer",
               ("GROQ_API_KEY",), "Groq API"),
    )
}


def derive_name(host: str) -> str:
    """A route name from a host: api.stripe.com -> stripe, openrouter.ai -> openrouter."""
    h = normalize_host(host)
    labels = h.split(".")
    if len(labels) < 2 or all(x.isdigit() for x in labels) or ":" in h:
        return h
    labels = labels[:-1]                       # the TLD
    while len(labels) > 1 and labels[0] in ("api", "www"):
        labels = labels[1:]
    return labels[0] if len(labels) == 1 else ".".join(labels)
