"""What a keyring account name may not be: something that looks like a key."""

from __future__ import annotations

from cordon.core.credlike import looks_like_credential


def test_credential_lookalikes() -> None:
    for key in ("sk-proj-Q3x9Lm2Vt7Rb4Nw8Kc1Zp6Hy5", "sk-ant-api03-abcdefghijklmnop", "ghp_0123456789abcdefghij",
                "github_pat_11ABCDEFG0123456789", "xoxb-2412-9941-abcdefGHIJ", "AKIAIOSFODNN7EXAMPLE",
                "a8f5f167f44f4964e6c998dee827110c", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"):
        assert looks_like_credential(key), key
    for name in ("openai", "anthropic", "me@example.com", "gh:github.com", "team_openai_prod_key_2025",
                 "my-work-account-openai-2024", "averyveryverylongaccountname2", "sk", ""):
        assert not looks_like_credential(name), name
