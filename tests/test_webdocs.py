"""Documentation pages as a source: a real local HTTP server with robots.txt, broken links, redirects, a PDF, a huge
page and a loop of links; crawled politely, main text kept, flattened into step 1's layout and cited by URL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import qa, repos, webdocs
from helpers.config import load_config

NAV = "<nav><a href='/docs/'>Home</a> <a href='/docs/guide.html'>Guide</a> NAVBOILERPLATE</nav>"
FOOTER = "<footer>FOOTERBOILERPLATE &copy; 2026 <a href='/blog/'>blog</a></footer>"
CODE = "def shard_path(root, index):\n    # one file per shard\n    return f\"{root}/shard.{index:05}.mds\"\n"


def page(title: str, main: str, wrapper: str = "main") -> bytes:
    return (f"<!doctype html><html><head><title>{title}</title><style>.x{{color:red}}</style>"
            f"<script>var TRACKER = 1;</script></head><body><header>HEADERBOILERPLATE</header>{NAV}"
            f"<{wrapper}>{main}</{wrapper}><aside>ASIDEBOILERPLATE</aside>{FOOTER}</body></html>").encode()


HTML = "text/html; charset=utf-8"
ROUTES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /docs/private/\n"),
    "/docs/": (200, {"Content-Type": HTML}, page("Tiny docs", """
        <h1>Welcome to tiny streaming</h1>
        <p>Start with the <a href="guide.html">guide</a>, then the <a href="api.html#top">API</a>.</p>
        <ul><li><a href="missing.html">a broken link</a></li><li><a href="old.html">an old page</a></li>
            <li><a href="away.html">a page that moved away</a></li><li><a href="data.json">data</a></li>
            <li><a href="manual.pdf">the manual</a></li><li><a href="huge.html">everything</a></li>
            <li><a href="private/secret.html">internal notes</a></li><li><a href="loop/a.html">loop</a></li>
            <li><a href="/blog/post.html">our blog</a></li><li><a href="https://example.invalid/x">elsewhere</a></li>
            <li><a href="mailto:team@example.invalid">mail us</a></li></ul>""")),
    "/docs/guide.html": (200, {"Content-Type": HTML}, page("Guide", f"""
        <h1>Guide<a class="headerlink" href="#guide">¶</a></h1>
        <p>Shards are written by the <code>ShardWriter</code>   and named
           by their index.</p>
        <h2>Naming shards</h2>
        <pre>{CODE}</pre>
        <p>Back to the <a href="index.html#top">start</a> or <a href="./">here</a>.</p>""")),
    "/docs/api.html": (200, {"Content-Type": HTML}, page("API", """
        <h1>API reference</h1><p>The <em>zorblax</em> compression codec squeezes shards.</p>""", wrapper="article")),
    "/docs/old.html": (301, {"Location": "/docs/moved/guide2.html"}, b""),
    "/docs/moved/guide2.html": (200, {"Content-Type": HTML}, page("Moved", "<h1>Moved guide</h1><p>New home.</p>")),
    "/docs/away.html": (302, {"Location": "/blog/post.html"}, b""),
    "/docs/data.json": (200, {"Content-Type": "application/json"}, json.dumps({"a": 1}).encode()),
    "/docs/manual.pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4\n\x00\x01\x02binary"),
    # Several MB, and without Content-Length: the crawler must stop reading at its byte limit.
    "/docs/huge.html": (200, {"Content-Type": "text/html"}, b"<html><body><main><p>" + b"big " * 1_000_000),
    "/docs/private/secret.html": (200, {"Content-Type": HTML}, page("Secret", "<p>SECRET</p>")),
    "/docs/loop/a.html": (200, {"Content-Type": HTML}, page("A", "<h1>Loop A</h1><p><a href='b.html'>to B</a></p>")),
    "/docs/loop/b.html": (200, {"Content-Type": HTML}, page("B", """<h1>Loop B</h1>
        <p><a href="a.html#again">to A</a> <a href="../loop/a.html">A again</a> <a href="/docs/">up</a></p>""")),
    "/blog/post.html": (200, {"Content-Type": HTML}, page("Blog", "<p>BLOG</p>")),
}


@dataclass
class Site:
    """The local documentation site: its docs prefix and every request it received (path, User-Agent)."""

    prefix: str
    requests: list[tuple[str, str]] = field(default_factory=list)

    def paths(self, since: int = 0) -> list[str]:
        return [path for path, _ in self.requests[since:]]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    log: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            log.append((self.path, self.headers.get("User-Agent", "")))
            status, headers, body = ROUTES.get(self.path, (404, {"Content-Type": HTML}, b"<p>not found</p>"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if self.path != "/docs/huge.html":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the crawler stopped reading a page over its limit

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    result = Site(prefix=f"http://127.0.0.1:{server.server_address[1]}/docs/", requests=log)
    yield result
    server.shutdown()
    server.server_close()


def docs_site(site: Site, **limits: object) -> webdocs.DocsSite:
    return webdocs.site_from_manifest({"url": site.prefix + "index.html", "delay_s": 0, **limits}, "test")


def test_crawl_keeps_the_pages_under_the_prefix_and_counts_what_it_skipped(site: Site) -> None:
    since = len(site.requests)
    result = webdocs.crawl(docs_site(site, max_page_bytes=1_000_000))
    p = site.prefix
    assert {page.url for page in result.pages} == {p, p + "guide.html", p + "api.html", p + "moved/guide2.html",
                                                   p + "loop/a.html", p + "loop/b.html"}
    assert dict(result.skipped) == {"robots.txt": 1, "HTTP 404": 1, "redirect outside prefix": 1, "not HTML": 2,
                                    "too large": 1, "outside prefix": 3}
    paths = site.paths(since)
    assert paths[0] == "/robots.txt" and "/docs/private/secret.html" not in paths and "/blog/post.html" not in paths
    assert len(paths) == len(set(paths)), f"a page was fetched twice (loop, fragment or index.html): {paths}"
    assert {ua for _, ua in site.requests[since:]} == {webdocs.USER_AGENT}
    assert [page.name for page in result.pages if page.url == p] == ["index"]


def test_main_text_drops_boilerplate_and_keeps_headings_and_code(site: Site) -> None:
    pages = {page.url.removeprefix(site.prefix): page.text for page in webdocs.crawl(docs_site(site)).pages}
    for text in pages.values():
        for junk in ("NAVBOILERPLATE", "FOOTERBOILERPLATE", "HEADERBOILERPLATE", "ASIDEBOILERPLATE", "TRACKER", "color"):
            assert junk not in text
    guide = pages["guide.html"]
    assert guide.startswith("# Guide\n\nShards are written by the `ShardWriter` and named by their index.\n")
    assert "## Naming shards\n\n```\n" + CODE + "```\n" in guide  # indentation and '#' comment kept verbatim
    assert pages["api.html"].startswith("# API reference\n\nThe zorblax compression codec")  # <article>, no <main>
    assert pages[""].startswith("# Welcome to tiny streaming") and "- a broken link" in pages[""]


def test_limits_and_delay_are_honoured(site: Site) -> None:
    since = len(site.requests)
    start = time.perf_counter()
    result = webdocs.crawl(docs_site(site, max_pages=3, delay_s=0.2))
    elapsed = time.perf_counter() - start
    assert len(site.paths(since)) == 1 + 3  # robots.txt, then three pages
    assert elapsed >= 3 * 0.2  # a wait before each request after the first
    assert len(result.pages) == 3 and result.skipped["page limit"] > 0


def test_docs_source_flattens_into_retrieval_data_and_a_rerun_reuses_it(site: Site, tmp_path: Path) -> None:
    manifest = tmp_path / "docs.yaml"
    manifest.write_text(f"sources:\n  - name: tinydocs\n    docs: {{url: '{site.prefix}', max_pages: 30, delay_s: 0,"
                        " max_page_bytes: 1000000}\n")
    cfg = load_config(work_dir=str(tmp_path / "work"), manifest=str(manifest))
    [report] = repos.download_sources(cfg, progress=False)
    assert report.status == "built" and report.kept == 6
    assert report.skipped["too large"] == 1 and report.skipped["robots.txt"] == 1 and report.skipped["not HTML"] == 2
    records = repos.read_index(cfg, "tinydocs")
    assert sorted(r.path for r in records)[0] == site.prefix and all(r.path.startswith(site.prefix) for r in records)
    assert not repos.check_sources(cfg, ["tinydocs"])
    since = len(site.requests)
    [again] = repos.download_sources(cfg, progress=False)
    assert again.status == "already done" and again.kept == 6 and len(site.requests) == since


def test_unreachable_site_or_nothing_kept_is_a_clear_error(site: Site, tmp_path: Path) -> None:
    cfg = load_config(work_dir=str(tmp_path))
    closed = repos.Source("gone", "docs", "http://127.0.0.1:9/docs/",
                          docs=webdocs.site_from_manifest({"url": "http://127.0.0.1:9/docs/", "delay_s": 0}, "t"))
    manifest = repos.Manifest(tmp_path / "m.yaml", [closed])
    with pytest.raises(repos.SourceUnavailable, match=r"source 'gone': cannot reach http://127\.0\.0\.1:9/robots\.txt"):
        repos.build_source(cfg, closed, manifest)
    private = site.prefix + "private/"
    hidden = repos.Source("hidden", "docs", private, docs=webdocs.site_from_manifest({"url": private, "delay_s": 0}, "t"))
    with pytest.raises(repos.SourceUnavailable, match=r"no page kept.*robots\.txt"):
        repos.build_source(cfg, hidden, manifest)
    assert not (cfg.retrieval_data_dir / "hidden").exists()


def test_a_docs_page_is_cited_by_its_url(site: Site, tmp_path: Path, workshop_config) -> None:
    cfg = load_config(work_dir=str(tmp_path))
    workshop_config.models_dir.mkdir(parents=True, exist_ok=True)  # the embedder is exported once per test session
    (tmp_path / "models").symlink_to(workshop_config.models_dir, target_is_directory=True)
    source = repos.Source("tinydocs", "docs", site.prefix, docs=docs_site(site))
    repos.build_source(cfg, source, repos.Manifest(tmp_path / "m.yaml", [source]))
    qa.build_index(cfg, repos.read_index(cfg, "tinydocs"), progress=False)
    hit = qa.CodeIndex.load(cfg).search("which codec squeezes shards, zorblax?", 3, "bm25")[0]
    assert hit.chunk.citation == site.prefix + "api.html" and hit.chunk.symbol == "API reference"
    code = qa.CodeIndex.load(cfg).search("shard_path one file per shard", 1, "hybrid")[0].chunk
    assert code.citation == site.prefix + "guide.html" and code.symbol == "Naming shards" and CODE in code.text


@pytest.mark.parametrize("docs, words", [
    ("'https://example.org/docs/'", ["source 'x'", "'docs' must be a mapping", "url"]),
    ("{prefix: 'https://example.org/'}", ["source 'x'", "'docs' must be a mapping", "url"]),
    ("{url: 'ftp://example.org/docs/'}", ["source 'x'", "'docs.url'", "http(s) URL"]),
    ("{url: 'https://example.org/docs/', prefix: 'https://other.org/docs/'}", ["'docs.url'", "docs.prefix", "same scheme and host"]),
    ("{url: 'https://example.org/docs/', max_pages: 0}", ["'docs.max_pages'", "positive whole number"]),
    ("{url: 'https://example.org/docs/', max_page_bytes: 'big'}", ["'docs.max_page_bytes'", "positive whole number"]),
    ("{url: 'https://example.org/docs/', delay_s: -1}", ["'docs.delay_s'", "from 0 to 60"]),
    ("{url: 'https://example.org/docs/', depth: 3}", ["docs.depth", "docs.max_pages"]),
    ("{url: 'https://example.org/docs/'}, ref: v1", ["source 'x'", "'ref' only applies to git"]),
])
def test_bad_docs_entries_name_the_field_and_the_fix(tmp_path: Path, docs: str, words: list[str]) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(f"sources:\n  - {{name: x, docs: {docs}}}\n")
    with pytest.raises(repos.ManifestError) as err:
        repos.load_manifest(path)
    for word in words:
        assert word in str(err.value)


def test_a_good_docs_entry_gets_defaults() -> None:
    site = webdocs.site_from_manifest({"url": "HTTPS://Example.org:443/docs/intro/index.html#top"}, "t")
    assert site == webdocs.DocsSite(url="https://example.org/docs/intro/", prefix="https://example.org/docs/intro/")
    assert webdocs.site_from_manifest({"url": "https://example.org/docs/a.html"}, "t").prefix == "https://example.org/docs/"
