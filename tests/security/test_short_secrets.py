"""A secret shorter than 8 characters is dropped from the child's other variables too, wherever it
stands as a whole value or a whole token (`Bearer <s>`, `user:<s>`, `k=<s>;...`, or base64 as in
`Basic base64(user:<s>)`). Inside a longer word it is not looked for: it would match ordinary text
(the documented limit; `docs/exec.md`)."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
from pathlib import Path

from cordon.core.leaks import holds_secret
from tests import configs
from tests.conftest import write

SHORT = "k3Y9z"
ROUTE_TOML = configs.render(configs.openai())   # CORDON_TEST_REAL_KEY

COPIES = {"COPY_WHOLE": SHORT, "COPY_BEARER": f"Bearer {SHORT}", "COPY_USER": f"user:{SHORT}",
          "COPY_LIST": f"a=1;key={SHORT};b=2",
          "COPY_BASIC": "Basic " + base64.b64encode(f"me:{SHORT}".encode()).decode()}
KEPT = {"KEEP_WORD": f"x{SHORT}x", "KEEP_PATH": "/usr/local/bin:/usr/bin"}


def test_short_secret_copies_are_dropped_from_the_child_environment(  # type: ignore[no-untyped-def]
        project: Path, cordon_proc) -> None:
    write(project / "cordon.toml", ROUTE_TOML)
    script = textwrap.dedent("""
        import json, os
        print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(("COPY_", "KEEP_"))}))
    """)
    r = cordon_proc("exec", "--", sys.executable, "-c", script, cwd=project,
                    env={"CORDON_TEST_REAL_KEY": SHORT, **COPIES, **KEPT})
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen == KEPT
    for name in COPIES:
        assert name in r.stderr    # named (never the value) when dropped
    assert SHORT not in r.stderr


def test_the_short_secret_rule_is_tokens_not_substrings() -> None:
    assert holds_secret("ab12", "ab12") and holds_secret("x ab12", "ab12")
    assert not holds_secret("xab12", "ab12") and not holds_secret("ab123", "ab12")
    assert holds_secret("xx sk-long-secret-1 yy", "sk-long-secret-1")
    assert holds_secret("xsk-long-secret-1y", "sk-long-secret-1")   # 8 or more: anywhere
