"""Token hygiene and Hub names, in one place: what a secret looks like in text, what a repo id is."""
from __future__ import annotations

import re

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def scrub(text: str, *secrets_: str | None) -> str:
    """`text` with every given secret (and anything shaped like a Hub token) masked."""
    out = str(text)
    for s in secrets_:
        if s:
            out = out.replace(s, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", out)


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
