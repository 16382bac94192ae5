"""The Content-Security-Policy of the service's pages (the upload page, the meter page)."""

from __future__ import annotations

__all__ = ["page_policy"]


def page_policy(page: str, *, img_src: str = "'self' blob: data:") -> str:
    """A page's Content-Security-Policy: its own inline script and style (by hash), images from
    ``img_src``, requests to this server, and nothing else."""
    import base64
    import hashlib
    import re

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        f"img-src {img_src}; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
