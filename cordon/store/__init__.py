"""The user's machine: files and secrets that outlive a process.

What lives here: where things are (`paths`), which config and state directory a
command works on (`scope`), `cordon.toml` loading and comment-keeping edits
(`config`, `configedit`, `tomlentries`), secret sources (`secrets`: keyring,
1Password, file, command, env) and the generation file running proxies watch
(`generation`), proxy tokens (`tokens`), the CA store and bundles (`castore`),
session directories and crash repair (`session`), the editors of user files
(`edits`, `dotenvfile`) and the one record that restores them (`userfiles`:
setup's records and sessions' leases), the `cordon start` run record
(`runrecord`) and the one atomic writer (`atomic`).

May import: `core`. Never `proxy`, `app` or `cli`; nothing here prints.
"""
