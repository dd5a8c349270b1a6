"""The built smoke book as a reader sees it, in headless Chromium (Debian's ``chromium``).

Opens the index, the results page and every notebook page; fails on a figure page without its
figures, an image that does not load, a broken internal link, a Python traceback, a stderr block,
a number written with six trailing zeros (``45517.000000``), a Python object's repr left as a cell's
output (``PosixPath('/tmp/...')``: the build machine's paths), an estimate outside its own interval
without the flag that says so, a table running off the page's right edge, or a results page
without the claims ledger's verdicts before Table 1's numbers; and it measures the results page's
visible text (its article, with every dropdown closed: at most :data:`MAX_VISIBLE_TEXT`
characters). Screenshots of the results page
and one figure page are kept in the test's temporary folder. :func:`page_defects` is the check
itself, also tested on crafted pages without a browser (``tests/test_pages.py``).
"""
import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from ehrlib.metrics.display import OUTSIDE_FLAG

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def browser():
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


MAX_VISIBLE_TEXT = 12_000
"""The most characters of visible text the results page may show with its dropdowns closed."""
SIX_ZEROS = re.compile(r"\d+\.\d*0{6}(?!\d)")
NUMBER = r"-?\d+(?:\.\d+)?"
REPR = re.compile(r"\b(?:Posix|Windows)?Path\('[^']*'\)|<[\w.]+ object at 0x[0-9a-f]+>")
INTERVAL = re.compile(rf"({NUMBER})({re.escape(OUTSIDE_FLAG)}?) \[({NUMBER}), ({NUMBER})\]")


def page_defects(info: dict) -> list[str]:
    """What a reader must not see on a page, from the page's ``text``, its number of ``stderr``
    output blocks and the ``cut`` tables (wider than the page, not scrollable)."""
    out = []
    if info.get("stderr"):
        out.append(f"{info['stderr']} stderr block(s)")
    out += [f"a number with six trailing zeros: {m.group(0)}" for m in SIX_ZEROS.finditer(info["text"])][:3]
    out += [f"a Python object's repr as an output: {m.group(0)}" for m in REPR.finditer(info["text"])][:3]
    for m in INTERVAL.finditer(info["text"]):
        e, flag, lo, hi = float(m.group(1)), m.group(2), float(m.group(3)), float(m.group(4))
        if not flag and not lo <= e <= hi:
            out.append(f"an estimate outside its interval without the flag {OUTSIDE_FLAG}: {m.group(0)}")
    out += [f"a table cut off at the right edge ({w} px wide)" for w in info.get("cut", [])]
    out += [f"the claims ledger needs a sideways scroll ({w} px of content)" for w in info.get("ledger_scroll", [])]
    return out


def _check_page(browser, path: Path, screenshot: Path | None = None) -> dict:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    info = page.evaluate("""() => ({
        images: Array.from(document.querySelectorAll('main img, article img')).map(i => [i.getAttribute('src'), i.naturalWidth]),
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
        text: document.body ? document.body.innerText : "",
        visible_chars: (() => {  // the page's own text a reader sees: not the sidebar, not a closed dropdown's body
            const root = document.querySelector('article') || document.querySelector('main') || document.body;
            if (!root) return 0;
            const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
            let n = 0, node;
            while ((node = walker.nextNode())) {
                let hidden = false;
                for (let child = node, e = node.parentElement; e && !hidden; child = e, e = e.parentElement) {
                    if (e.tagName === 'DETAILS' && !e.open && !(child.tagName === 'SUMMARY')) hidden = true;
                    const st = getComputedStyle(e);
                    if (st.display === 'none' || st.visibility === 'hidden') hidden = true;
                    if (e === root) break;
                }
                if (!hidden) n += node.textContent.replace(/\\s+/g, ' ').length;
            }
            return n;
        })(),
        open_details: document.querySelectorAll('details[open]').length,
        closed_details: document.querySelectorAll('details:not([open])').length,
        stderr: document.querySelectorAll('div.output.stderr, div.stderr').length,
        cut: Array.from(document.querySelectorAll('article table, main table')).filter(t => {
            if (t.getBoundingClientRect().right <= document.documentElement.clientWidth + 1) return false;
            for (let e = t; e; e = e.parentElement) {
                const o = getComputedStyle(e).overflowX;
                if ((o === 'auto' || o === 'scroll') && e.clientWidth < e.scrollWidth) return false;
            }
            return true;
        }).map(t => Math.round(t.getBoundingClientRect().width)),
        ledger_scroll: Array.from(document.querySelectorAll('section#which-of-the-paper-s-claims-hold table, table.artifact-claims'))
            .filter(t => t.scrollWidth > t.clientWidth + 1
                         || t.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
            .map(t => t.scrollWidth),
    })""")
    if screenshot:
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    broken = [src for src, width in info["images"] if width == 0]
    assert not broken, f"{path.name}: images that do not load: {broken}"
    for href in info["links"]:
        url = urlparse(href)
        if url.scheme == "file":
            target = Path(unquote(url.path))
            assert target.exists(), f"{path.name}: broken internal link {href}"
    assert "Traceback (most recent call last)" not in info["text"], f"{path.name} shows a traceback"
    defects = page_defects(info)
    assert not defects, f"{path.name}: " + "; ".join(defects)
    return info


def test_every_page_of_the_smoke_book_renders_with_its_figures(browser, smoke_build, tmp_path):
    html, run = smoke_build
    manifest = json.loads((run / "manifest.json").read_text())
    _check_page(browser, html / "book" / "intro.html")  # index.html redirects here
    results = _check_page(browser, html / "book" / "results.html", tmp_path / "results.png")
    text = results["text"].replace("\u2019", "'")  # the page sets apostrophes as typographic ones
    assert re.search(r"\d+ claims: \d+ (holds?|partly|does|undecidable|not)", text), \
        "the results page does not lead with the claims' verdicts"
    # what a reader sees with every dropdown closed: the page's own text, not the sidebar's table of contents
    assert results["open_details"] == 0 and results["closed_details"] >= 20, "the ledgers' rows are not closed dropdowns"
    visible = results["visible_chars"]
    print(f"results page: {visible} characters of visible text with the dropdowns closed")
    assert visible <= MAX_VISIBLE_TEXT, f"the results page shows {visible} characters with its dropdowns closed"
    assert "Findings" in text and text.index("Findings") < text.index("Ledger A") < text.index("Ledger B")
    body = text[text.index("Every number and figure on this page"):]  # not the sidebar, which lists stage 33
    assert body.index("Which of the paper's claims hold") < body.index("Table 1"), "Table 1 comes before the verdicts"
    table1 = (run / "tables" / "table1.csv").read_text().splitlines()
    first_row = table1[1].split(",")
    assert first_row[0] in results["text"], "Table 1's first model is not on the results page"
    numbers = re.findall(r"-?\d+\.\d+", table1[1])
    assert numbers and numbers[0] in results["text"], "Table 1's numbers are not on the results page"
    for nb in sorted((html / "notebooks").glob("*.html")):
        shot = tmp_path / "figure_page.png" if nb.stem == "41_longtail_marginals" else None
        info = _check_page(browser, nb, shot)
        outputs = manifest["stages"][nb.stem]["outputs"]
        figures = [o for o in outputs if o.startswith("figures/") and o.endswith(".png")]
        loaded = [src for src, width in info["images"] if "_images/" in (src or "") and width > 0]
        assert len(loaded) >= len(figures), f"{nb.name}: {len(figures)} figures saved, {len(loaded)} shown"
    assert (tmp_path / "results.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'results.png'}, {tmp_path / 'figure_page.png'}")
