"""The user's machine: files and secrets that outlive a process.

What lives here: where things are (`paths`), `cordon.toml` loading and
comment-keeping edits (`config`, `configedit`, `tomlentries`), secret sources
(`secrets`: keyring, 1Password, file, command, env) and the generation file
running proxies watch (`generation`), proxy tokens (`tokens`), the CA store and
bundles (`castore`), session directories and repair records (`session`),
`.env` blocks (`dotenvfile`), the `cordon start` run record (`runrecord`) and
the one atomic, fsynced writer (`atomic`).

May import: `core`. Never `proxy`, `app` or `cli`; nothing here prints.
"""
