"""`tokens.toml`: proxy credentials per scope (default token plus per-client tokens).

INTERFACE (owned by the proxy-commands issue):
    TokenStore(path).load() -> dict[name, token]; .ensure(name) -> token (creates 0600 file)
    .rotate(name) -> token; .revoke(name); .list() -> [(name, created)]
    check(tokens, header_value) -> client name | None   (constant time)
"""
