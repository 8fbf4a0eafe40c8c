"""The `[[routes]]` tables the benchmarks write into their cordon.toml (one place for the shape).

    route("bench", "localhost", env="BENCH_SECRET", upstream="127.0.0.1:4443", ca_file="/x/ca.pem")
    route("openai", "api.openai.com", keyring="openai")
"""

from __future__ import annotations


def route(name: str, host: str, *, env: str | None = None, keyring: str | None = None,
          header: str = "Authorization", scheme: str | None = "Bearer",
          upstream: str | None = None, ca_file: str | None = None) -> str:
    """A header-injecting route whose secret is the variable `env` or the keyring account `keyring`."""
    secret = f'source = "env"\nvar = "{env}"\n' if env else f'source = "keyring"\naccount = "{keyring}"\n'
    out = (f'\n[[routes]]\nname = "{name}"\n[routes.match]\nhost = "{host}"\n'
           f'[routes.auth]\ntype = "header"\nheader_name = "{header}"\n'
           + (f'scheme = "{scheme}"\n' if scheme else "")
           + "[routes.auth.secret]\n" + secret)
    if upstream:
        out += f'[routes.upstream]\naddress = "{upstream}"\n' + (f'ca_file = "{ca_file}"\n' if ca_file else "")
    return out
