"""A keyring backend and a script for the tests of cordon.app.keyringread's forked child."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env

# a backend that answers from a JSON file and raises KeyringLocked for "locked" (a real backend's error)
BACKEND = '''
import json, os, time
from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked

class Keyring(KeyringBackend):
    priority = 1
    def get_password(self, service, account):
        gate = os.environ.get("GATE")
        if gate:
            open(gate + ".waiting", "w").close()
            while not os.path.exists(gate):
                time.sleep(0.01)
        if account == "locked":
            raise KeyringLocked("the collection is locked")
        with open(os.environ["ENTRIES"]) as f:
            return json.load(f).get(account)
    def set_password(self, service, account, password):
        raise NotImplementedError
    def delete_password(self, service, account):
        raise NotImplementedError
'''

READ = '''
import json, os, sys
from cordon.app import keyringread
from cordon.core.model import Auth, Route, SecretSpec
accounts = sys.argv[1].split(",")
routes = [Route(name=a, host=a + ".example", auth=Auth(type="header", secret=SecretSpec(source="keyring", account=a)))
          for a in accounts]
read = keyringread.start(routes, os.environ)
print(read._pid if read is not None else "none", flush=True)
answers = read.answers() if read is not None else None
print(json.dumps(None if answers is None else {f"{s}/{a}": list(v) for (s, a), v in answers.items()}))
'''



def json_backend(d: Path) -> dict[str, str]:
    """The JSON-file backend in `d`: PYTHONPATH, PYTHON_KEYRING_BACKEND and ENTRIES for a script
    (GATE=path: each read first writes path.waiting, then waits until path exists)."""
    (d / "jsonkeyring.py").write_text(BACKEND)
    entries = d / "entries.json"
    entries.write_text(json.dumps({"openai": "sk-from-the-file", "spaced": "  sk-spaced \n"}))
    return {"PYTHONPATH": str(d), "PYTHON_KEYRING_BACKEND": "jsonkeyring.Keyring", "ENTRIES": str(entries)}


def run_read(accounts: str, env: dict[str, str], prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """READ in a fresh process: its first line is the child's pid, its second the answers."""
    return subprocess.Popen([*prefix, sys.executable, "-c", READ, accounts], env=subprocess_env(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
