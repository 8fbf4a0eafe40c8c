"""The environment contract for children of cordon (DESIGN.md §2), and its rendering.

Pure: builds the variable table from a port, token, bundle paths and routes,
and renders it for bash/zsh (`shell`), fish, dotenv and JSON with quoting
tested against quotes, `$`, spaces and newlines.

INTERFACE (owned by the proxy-commands issue; exec relies on it):
    proxy_url(port, token, user="cordon") -> str
    child_env(base_env, *, port, token, bundle_path, ca_path, routes, session_id=None,
              codex_home=None, remove=()) -> dict[str, str]
        returns the full environment for the child: base minus `remove`, plus the table
    contract_vars(...) -> dict[str, str]      only cordon's variables (for `cordon env`)
    merge_no_proxy(inherited, route_hosts) -> str
    render(vars, fmt) -> str                  fmt in shell|fish|dotenv|json
"""
