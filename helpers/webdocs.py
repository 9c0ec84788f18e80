"""Step 1 for documentation web pages: crawl a docs site politely and keep each page's main text.

A manifest entry ``docs: {url: …, prefix: …, max_pages: …, delay_s: …, max_page_bytes: …}`` names a start page and
the prefix every crawled URL must start with (default: the start page's folder, so always the same host). The
crawler reads robots.txt first and obeys it, waits ``delay_s`` seconds between requests (longer if robots.txt asks),
follows links and redirects only while they stay under the prefix, and skips pages that are broken, not HTML,
larger than ``max_page_bytes`` or already seen (URLs are normalised: no ``#fragment``, ``index.html`` is its
folder), stopping after ``max_pages`` requests. What is skipped is counted per reason.

Each page keeps its main content (``<main>``, ``<article>`` or ``role="main"``; navigation, headers, footers,
asides and scripts dropped) as Markdown-like text: headings as ``#`` lines, ``<pre>`` blocks as fenced code kept
character for character, one paragraph per line. ``helpers.repos`` writes the pages into ``retrieval_data/<name>/``
with the page URL as their path, so retrieval cites the URL.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import requests
from bs4 import BeautifulSoup
from bs4.element import NavigableString, PreformattedString, Tag

from helpers.errors import ManifestError, SourceUnavailable

USER_AGENT = "codebase-qa-workshop/1.0 (documentation crawler of a tutorial; obeys robots.txt)"
TIMEOUT_S = 15
MAX_REDIRECTS = 5
MAX_ROBOTS_BYTES = 500_000
DEFAULT_MAX_PAGES = 100
DEFAULT_DELAY_S = 1.0
DEFAULT_MAX_PAGE_BYTES = 2_000_000
FIELDS = ("url", "prefix", "max_pages", "delay_s", "max_page_bytes")
EXAMPLE = "docs: {url: https://example.org/docs/, max_pages: 50, delay_s: 1}"
HTML_TYPES = ("text/html", "application/xhtml+xml")
DROPPED = ("nav", "header", "footer", "aside", "script", "style", "noscript", "template")
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
BLOCKS = frozenset(("address", "article", "blockquote", "body", "br", "caption", "dd", "details", "div", "dl", "dt",
                    "figcaption", "figure", "hr", "li", "main", "ol", "p", "section", "summary", "table", "tr", "ul"))


@dataclass(frozen=True)
class DocsSite:
    """A documentation site to crawl: the start page, the prefix every crawled URL starts with, and the limits."""

    url: str
    prefix: str
    max_pages: int = DEFAULT_MAX_PAGES  # requests for pages at most (redirect hops count, robots.txt does not)
    delay_s: float = DEFAULT_DELAY_S  # wait between two requests (robots.txt's Crawl-delay wins when longer)
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES  # larger pages are skipped as 'too large'


@dataclass
class Page:
    """One kept page: its URL (the citation), its name below the prefix (for the file name) and its main text."""

    url: str
    name: str
    text: str


@dataclass
class Crawl:
    """What a crawl kept, and how many URLs it skipped per reason ('robots.txt', 'HTTP 404', 'not HTML', …)."""

    pages: list[Page] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


# ---------------------------------------------------------------------------------------------- URLs and manifest


def normalize(url: str) -> str:
    """One spelling per page: no fragment, lower-case host, no default port, ``…/index.html`` -> ``…/``.

    Raises ValueError for a URL that cannot be parsed (a bad port, a broken IPv6 address).
    """
    parts = urlsplit(urldefrag(url).url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = parts.port
    netloc = host if port in (None, {"http": 80, "https": 443}.get(parts.scheme)) else f"{host}:{port}"
    path = re.sub(r"/index\.html?$", "/", parts.path or "/")
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _http_url(value: Any, what: str) -> str:
    message = f"{what}={value!r} must be an http(s) URL such as https://example.org/docs/."
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]", value.strip(), re.IGNORECASE):
        raise ManifestError(message)
    try:
        return normalize(value.strip())
    except ValueError:
        raise ManifestError(message) from None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def site_from_manifest(value: Any, where: str) -> DocsSite:
    """Validate a manifest entry's ``docs:`` mapping; every problem names the field and the fix."""
    if not isinstance(value, dict) or "url" not in value:
        raise ManifestError(f"{where}: field 'docs' must be a mapping with at least a 'url', like {EXAMPLE}.")
    unknown = sorted(str(k) for k in value if k not in FIELDS)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join('docs.' + k for k in unknown)}; "
                            f"use {', '.join('docs.' + k for k in FIELDS)}.")
    url = _http_url(value["url"], f"{where}: field 'docs.url'")
    parts = urlsplit(url)
    folder = urlunsplit((parts.scheme, parts.netloc, parts.path.rsplit("/", 1)[0] + "/", "", ""))
    prefix = _http_url(value.get("prefix", folder), f"{where}: field 'docs.prefix'")
    if not url.startswith(prefix):
        raise ManifestError(f"{where}: field 'docs.url'={url!r} does not start with docs.prefix={prefix!r}; give a "
                            "prefix the start page begins with (same scheme and host), e.g. its folder.")
    for key, default in (("max_pages", DEFAULT_MAX_PAGES), ("max_page_bytes", DEFAULT_MAX_PAGE_BYTES)):
        if not _whole(value.get(key, default)):
            raise ManifestError(f"{where}: field 'docs.{key}'={value[key]!r} must be a positive whole number "
                                f"(default {default}).")
    delay = value.get("delay_s", DEFAULT_DELAY_S)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 60:
        raise ManifestError(f"{where}: field 'docs.delay_s'={delay!r} must be the seconds to wait between requests, "
                            f"a number from 0 to 60 (default {DEFAULT_DELAY_S}; be polite to public sites).")
    return DocsSite(url=url, prefix=prefix, max_pages=value.get("max_pages", DEFAULT_MAX_PAGES), delay_s=float(delay),
                    max_page_bytes=value.get("max_page_bytes", DEFAULT_MAX_PAGE_BYTES))


def page_name(url: str, prefix: str) -> str:
    """The URL below the prefix as a relative file path: ``…/docs/guide/intro.html`` -> ``guide/intro.html``."""
    rel = url.removeprefix(prefix).strip("/")
    return re.sub(r"[^A-Za-z0-9._/-]+", "_", rel) or "index"


# ---------------------------------------------------------------------------------------------- main text


class _Verbatim(str):
    """A block whose whitespace is kept: a heading line or a fenced code block."""


def _render(node: Tag, out: list[str]) -> None:
    """Append ``node``'s text to ``out``: inline text as pieces, '' between blocks, headings and code as _Verbatim."""
    for child in node.children:
        if isinstance(child, PreformattedString):  # comments, doctype, CDATA
            continue
        if isinstance(child, NavigableString):
            out.append(str(child))
        elif not isinstance(child, Tag):
            continue
        elif child.name == "pre":
            out.append(_Verbatim("```\n" + child.get_text().strip("\n") + "\n```"))
        elif child.name in HEADINGS:
            title = " ".join(child.get_text(" ").split()).rstrip("¶ ")
            if title:
                out.append(_Verbatim("#" * int(child.name[1]) + " " + title))
        elif child.name == "code":
            out.append(f"`{child.get_text()}`")
        elif child.name in ("td", "th"):
            out.append(f" {child.get_text(' ')} |")
        elif child.name in BLOCKS:
            out.append("")
            out.append("- " if child.name == "li" else "")
            _render(child, out)
            out.append("")
        else:  # inline: a, span, em, strong, …
            _render(child, out)


def main_text(soup: BeautifulSoup) -> str:
    """The page's main content as Markdown-like text (this removes the boilerplate from ``soup``)."""
    root = soup.find("main") or soup.find("article") or soup.find(attrs={"role": "main"}) or soup.body or soup
    for tag in root.find_all(DROPPED):
        if not tag.decomposed:
            tag.decompose()
    pieces: list[str] = []
    _render(root, pieces)
    blocks: list[str] = []
    line: list[str] = []
    for piece in [*pieces, ""]:
        if piece and not isinstance(piece, _Verbatim):
            line.append(piece)
            continue
        text = " ".join("".join(line).split())
        line.clear()
        if text and text != "-":
            blocks.append(text)
        if piece:
            blocks.append(piece)
    title = " ".join(soup.title.get_text().split()) if soup.title else ""
    if blocks and title and not blocks[0].startswith("# "):
        blocks.insert(0, "# " + title)
    return "\n\n".join(blocks) + "\n" if blocks else ""


def links(soup: BeautifulSoup, page_url: str) -> list[str]:
    """Every http(s) link of the page (``<base href>`` honoured), normalised, in order."""
    base = soup.find("base", href=True)
    base_url = urljoin(page_url, str(base["href"])) if base else page_url
    found = []
    for a in soup.find_all("a", href=True):
        try:
            url = normalize(urljoin(base_url, str(a["href"]).strip()))
        except ValueError:
            continue
        if url.startswith(("http://", "https://")):
            found.append(url)
    return found


# ---------------------------------------------------------------------------------------------- fetching


class _Client:
    """One HTTP session with the crawler's User-Agent that waits ``delay`` seconds between requests."""

    def __init__(self, delay: float):
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.delay = delay
        self.pages = 0  # page requests made (robots.txt not counted)
        self._last = 0.0

    def get(self, url: str, redirects: bool = False) -> requests.Response:
        time.sleep(max(0.0, self._last + self.delay - time.monotonic()))
        try:
            return self.session.get(url, timeout=TIMEOUT_S, allow_redirects=redirects, stream=True)
        finally:
            self._last = time.monotonic()


def _read_capped(resp: requests.Response, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (reading stops just past the limit)."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    for piece in resp.iter_content(65536):
        body += piece
        if len(body) > limit:
            return None
    return bytes(body)


def _robots(client: _Client, site: DocsSite, name: str) -> RobotFileParser:
    """The host's robots.txt rules (everything allowed when it has none); an unreachable host is an error."""
    parts = urlsplit(site.url)
    robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
    rules = RobotFileParser(robots_url)
    try:
        with client.get(robots_url, redirects=True) as resp:
            body = _read_capped(resp, MAX_ROBOTS_BYTES) if resp.status_code < 400 else None
    except requests.RequestException as err:
        raise SourceUnavailable(
            f"source {name!r}: cannot reach {robots_url} ({type(err).__name__}); check field 'docs.url' and the "
            "network, or build the corpus from PyPI sdists or a local folder instead.") from None
    if resp.status_code in (401, 403):  # as urllib.robotparser: access denied means nothing may be crawled
        rules.disallow_all = True
    elif body is None:
        rules.allow_all = True
    else:
        rules.parse(body.decode("utf-8", errors="replace").splitlines())
    return rules


def _visit(client: _Client, url: str, site: DocsSite, rules: RobotFileParser,
           seen: set[str]) -> tuple[str, bytes, str | None] | str:
    """GET ``url``, following redirects that stay under the prefix: (final URL, HTML, charset), or why it was skipped."""
    for _ in range(MAX_REDIRECTS + 1):
        if not rules.can_fetch(USER_AGENT, url):
            return "robots.txt"
        if client.pages >= site.max_pages:
            return "page limit"
        client.pages += 1
        try:
            with client.get(url) as resp:
                if resp.is_redirect:
                    target = normalize(urljoin(url, resp.headers["Location"]))
                    if not target.startswith(site.prefix):
                        return "redirect outside prefix"
                    if target in seen:
                        return "redirect to a page already seen"
                    seen.add(target)
                    url = target
                    continue
                if resp.status_code != 200:
                    return f"HTTP {resp.status_code}"
                content_type = resp.headers.get("Content-Type", "")
                if content_type.split(";")[0].strip().lower() not in HTML_TYPES:
                    return "not HTML"
                body = _read_capped(resp, site.max_page_bytes)
                if body is None:
                    return "too large"
                charset = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
                return url, body, charset.group(1) if charset else None
        except requests.RequestException:
            return "unreachable"
        except ValueError:  # a Location header that is not a URL
            return "bad redirect"
    return "too many redirects"


def crawl(site: DocsSite, name: str = "docs") -> Crawl:
    """Crawl ``site`` breadth-first from its start page; the pages kept and the URLs skipped per reason."""
    result = Crawl()
    client = _Client(site.delay_s)
    try:
        rules = _robots(client, site, name)
        client.delay = max(site.delay_s, float(rules.crawl_delay(USER_AGENT) or 0))
        queue, seen = deque([site.url]), {site.url}
        while queue:
            if client.pages >= site.max_pages:
                result.skipped["page limit"] += len(queue)
                break
            outcome = _visit(client, queue.popleft(), site, rules, seen)
            if isinstance(outcome, str):
                result.skipped[outcome] += 1
                continue
            url, body, charset = outcome
            soup = BeautifulSoup(body, "html.parser", from_encoding=charset)
            for link in links(soup, url):
                if link not in seen:
                    seen.add(link)
                    if link.startswith(site.prefix):
                        queue.append(link)
                    else:
                        result.skipped["outside prefix"] += 1
            try:
                text = main_text(soup)
            except RecursionError:
                result.skipped["nested too deeply"] += 1
                continue
            if text:
                result.pages.append(Page(url=url, name=page_name(url, site.prefix), text=text))
            else:
                result.skipped["no text"] += 1
    finally:
        client.session.close()
    return result
