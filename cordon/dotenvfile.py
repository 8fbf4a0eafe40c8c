"""A managed, clearly marked block inside a user's `.env` file.

INTERFACE (owned by the exec issue; integrations rely on it):
    BEGIN/END markers; render_block(vars) -> str; apply_block(text, vars) -> str
    (replaces or appends cordon's block, the user's lines untouched);
    remove_block(text) -> str; read_block(text) -> dict[str, str]
"""
