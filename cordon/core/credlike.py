"""Does a string look like a credential? For refusing one typed where a name belongs.

A user who pastes an API key at a "Keyring account" prompt would store the key in
cordon.toml in clear text, as the account's name. Known key prefixes, and long
random-looking tokens, are refused; names people give accounts pass. Pure.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# prefixes of keys and tokens issued by common providers
_PREFIXES = re.compile(
    r"^(sk-|sk_(live|test)_|rk_(live|test)_|pk_(live|test)_|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|"
    r"xox[abposr]-|xapp-|glpat-|AKIA[0-9A-Z]{12}|ASIA[0-9A-Z]{12}|AIza|hf_|gsk_|pplx-|r8_|npm_|dop_v1_|"
    r"SG\.|eyJ)", re.IGNORECASE)


def _entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def looks_like_credential(value: str) -> bool:
    v = value.strip()
    if not v or " " in v:
        return False
    if _PREFIXES.match(v) and len(v) >= 12:
        return True
    # a long random run (20+ letters and digits without a separator, high entropy); names
    # people choose are words joined by - _ . : @ ("team_openai_prod_2025")
    run = max(re.findall(r"[A-Za-z0-9+/=]+", v), key=len, default="")
    digits = sum(c.isdigit() for c in run)
    mixed = re.search(r"[a-z]", run) and re.search(r"[A-Z]", run)
    if len(run) >= 20 and re.search(r"[A-Za-z]", run) and (digits >= 3 or (digits and mixed)):
        return _entropy(run) >= 3.5
    return False
