"""``/docs`` and ``/redoc`` work where nothing outside can be reached: the page names no
other host, and every file it loads is served by the app itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

MEDIA_TYPES = {
    ".js": {"application/javascript", "text/javascript"},
    ".css": {"text/css"},
    ".png": {"image/png"},
}


class _References(HTMLParser):
    """The URLs an HTML page loads: scripts, style sheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "src" or (tag == "link" and name == "href")):
                self.urls.append(value)


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_names_no_other_host(client: TestClient, page: str) -> None:
    response = client.get(page)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert re.findall(r"(?i)(?:https?:)?//[a-z0-9.-]+", response.text) == []
    references = _references(response.text)
    assert len(references) >= 2, references
    for url in references:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_file_a_docs_page_loads_is_served_by_the_app(client: TestClient, page: str) -> None:
    html = client.get(page).text
    scripts = 0

    for url in _references(html):
        asset = client.get(urljoin(page, url))
        assert asset.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].split(";")[0] in MEDIA_TYPES[suffix], url
        assert asset.content
        scripts += suffix == ".js"

    assert scripts == 1
    assert "/openapi.json" in html
    assert client.get("/openapi.json").status_code == 200
