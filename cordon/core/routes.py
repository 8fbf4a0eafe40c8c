"""Route lookup and the built-in provider presets.

Pure: host normalisation, matching (exact, case-insensitive, trailing dot
ignored, any port; a `*.suffix` pattern covers every name under the suffix,
and an exact name wins over a pattern), path-prefix checks and preset
definitions.
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


def wildcard_suffix(pattern: str) -> str | None:
    """`*.githubcopilot.com` -> `githubcopilot.com`; None for an exact name."""
    return pattern[2:] if pattern.startswith("*.") else None


def host_matches(pattern: str, host: str) -> bool:
    """True when `host` is the exact name `pattern`, or a name under a `*.suffix` pattern
    (one label or more: `*.githubcopilot.com` covers api.individual.githubcopilot.com,
    not githubcopilot.com itself)."""
    h = normalize_host(host)
    suffix = wildcard_suffix(pattern)
    if suffix is None:
        return h == normalize_host(pattern)
    return h.endswith("." + suffix)


def constraint_names(patterns: Iterable[str]) -> list[str]:
    """The X.509 name-constraint entries that permit these hosts (RFC 5280 §4.2.1.10:
    a dNSName constraint covers the name and every name under it, so `*.x` becomes `x`)."""
    return sorted({wildcard_suffix(p) or p for p in patterns})


class RouteTable:
    """Maps a host name to its route: exact names in O(1), then `*.suffix` patterns
    (the longest suffix first)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._by_host: dict[str, Route] = {}
        suffixes: list[tuple[str, Route]] = []
        for r in self.routes:
            for h in r.hosts:
                suffix = wildcard_suffix(h)
                if suffix is None:
                    self._by_host.setdefault(normalize_host(h), r)
                else:
                    suffixes.append(("." + suffix, r))
        self._suffixes = sorted(suffixes, key=lambda s: -len(s[0]))

    def match(self, host: str) -> Route | None:
        h = normalize_host(host)
        hit = self._by_host.get(h)
        if hit is not None or not self._suffixes:
            return hit
        for suffix, r in self._suffixes:
            if h.endswith(suffix):
                return r
        return None

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
    more_hosts: tuple[str, ...] = ()
    query_param: str | None = None

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host, *self.more_hosts)

    def route(self, secret: SecretSpec, name: str | None = None) -> Route:
        return Route(
            name=name or self.name,
            host=self.host,
            auth=Auth(type="header", header_name=self.header_name, scheme=self.scheme,
                      placeholder_env=self.placeholder_env, secret=secret, query_param=self.query_param),
            more_hosts=self.more_hosts,
        )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("openai", "api.openai.com", "Authorization", "Bearer",
               ("OPENAI_API_KEY", "CODEX_API_KEY"), "OpenAI API (Codex CLI, openai SDKs)"),
        Preset("anthropic", "api.anthropic.com", "x-api-key", None,
               ("ANTHROPIC_API_KEY",), "Anthropic API (Claude Code, anthropic SDKs)"),
        # litellm (aider) sends the key as `?key=`, the Gemini CLI as x-goog-api-key;
        # opencode's Google provider reads GOOGLE_GENERATIVE_AI_API_KEY
        Preset("gemini", "generativelanguage.googleapis.com", "x-goog-api-key", None,
               ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY"),
               "Google Gemini API (Gemini CLI, aider, opencode)", query_param="key"),
        # the Copilot CLI sends the GitHub token to api.github.com, then to the Copilot API
        # host its plan names (api.githubcopilot.com, api.individual.githubcopilot.com, ...)
        # COPILOT_GITHUB_TOKEN: the Copilot CLI's own variable, read first when it holds a real-looking
        # token (the placeholder does not, so it falls back to GH_TOKEN, which holds one too)
        Preset("github", "api.github.com", "Authorization", "Bearer",
               ("GITHUB_TOKEN", "GH_TOKEN", "COPILOT_GITHUB_TOKEN"),
               "GitHub REST API and GitHub Copilot (Copilot CLI)",
               more_hosts=("*.githubcopilot.com",)),
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
