"""`cordon route add|edit|remove` and `cordon secret set|delete`: the edits, as functions.

Each route edit checks the upstream CA files first, keeps the rest of the file
(comments, order), notes the config among the user's known ones (so a shared
keyring entry is never deleted blindly) and approves exactly the routes cordon
wrote. Each secret change bumps the generation file, so running proxies read
the new value on their next request. Nothing here prints or asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cordon.app.allow import approve_written
from cordon.core.model import Route, SecretSpec
from cordon.store.configedit import add_route, remove_route, update_route
from cordon.store.generation import bump_generation, generation_file
from cordon.store.knownscopes import KeyringUser, keyring_users, remember
from cordon.store.paths import Paths
from cordon.store.upstreamca import check_ca_files


def add(paths: Paths, config_path: Path, route: Route) -> bool:
    """Append `route` to `config_path` (created if missing: returns True then)."""
    check_ca_files([route], config_path)
    created = add_route(config_path, route)
    _written(paths, config_path, route)
    return created


def edit(paths: Paths, config_path: Path, name: str, route: Route) -> None:
    """Replace the route called `name` by `route`, in place."""
    check_ca_files([route], config_path)
    update_route(config_path, name, route)
    _written(paths, config_path, route)


def remove(config_path: Path, name: str) -> Route:
    """Remove the route called `name`; returns it (its keyring entry is not touched)."""
    return remove_route(config_path, name)


def other_users(paths: Paths, config_path: Path, spec: SecretSpec) -> list[KeyringUser]:
    """Routes of the user's other known configs that read the same keyring entry."""
    return keyring_users(paths, spec, besides=config_path)


def store_secret(paths: Paths, env: Mapping[str, str], spec: SecretSpec, value: str) -> None:
    from cordon.store.secrets import set_keyring_secret
    set_keyring_secret(spec, value, env)
    bump_generation(generation_file(paths.cordon_home))   # running proxies re-resolve on their next request


def delete_secret(paths: Paths, env: Mapping[str, str], spec: SecretSpec) -> None:
    from cordon.store.secrets import delete_keyring_secret
    delete_keyring_secret(spec, env)
    bump_generation(generation_file(paths.cordon_home))   # running proxies drop the value


def _written(paths: Paths, config_path: Path, route: Route) -> None:
    remember(paths, config_path)
    approve_written(paths, config_path, [route.name])   # what cordon wrote is what the user asked for
