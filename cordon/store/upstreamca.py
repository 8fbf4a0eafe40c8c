"""A route's `[routes.upstream] ca_file`: present, readable and PEM certificates, or a ConfigError.

Checked where a user can still fix it calmly (`route add|edit`, the preflight of
`exec` and `start`, `doctor`) rather than found out as a failed handshake on the
first request. Reads the file; never writes. The certificates are parsed by
OpenSSL, as the proxy's verifying context will load them (no cryptography import
on `cordon start`'s way to ready).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

from cordon.core.errors import ConfigError
from cordon.core.model import Route
from cordon.core.pem import split_pem_certs

_HINT = ("point ca_file at a PEM file of the CA that signed the upstream's certificate "
         "(`cordon route edit {name} --upstream-ca-file PATH`), or remove ca_file")


def check_ca_file(path: Path, route_name: str, config_path: Path | None = None) -> None:
    """ConfigError unless `path` holds at least one PEM certificate that parses."""
    where = f"{config_path}: " if config_path else ""
    what = f"{where}route '{route_name}': upstream ca_file {path}"
    hint = _HINT.format(name=route_name)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} does not exist", hint) from None
    except IsADirectoryError:
        raise ConfigError(f"{what} is a directory, not a file", hint) from None
    except OSError as e:
        raise ConfigError(f"{what} cannot be read: {e.strerror or e}", hint) from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"{what} is not a PEM certificate file (no BEGIN CERTIFICATE block)", hint)
    try:
        pem = b"".join(split_pem_certs(data)).decode("ascii")
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as e:   # ValueError: a block that is not even ASCII
        detail = e.reason if isinstance(e, ssl.SSLError) and e.reason else "OpenSSL cannot read it"
        raise ConfigError(f"{what} holds a certificate that does not parse: {detail}", hint) from None


def check_ca_files(routes: Iterable[Route], config_path: Path | None = None) -> None:
    """check_ca_file for every route that names one."""
    for r in routes:
        if r.upstream is not None and r.upstream.ca_file is not None:
            check_ca_file(r.upstream.ca_file, r.name, config_path)
