"""The Content-Security-Policy of a written page, for the page tests (issue 11)."""

from __future__ import annotations

from html.parser import HTMLParser


def csp_of(page: str) -> list[str]:
    """The content of every ``<meta http-equiv="Content-Security-Policy">`` of a page (any
    attribute order)."""
    found = []

    class Meta(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "content-security-policy":
                found.append(attrs.get("content"))

        handle_startendtag = handle_starttag

    Meta().feed(page)
    return found
