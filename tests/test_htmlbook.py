import functools
import html
import http.server
import json
import os
import pathlib
import re
import shutil
import threading
import time
import urllib.request
from html.parser import HTMLParser
from typing import ClassVar

import nbformat
import pytest

from diffusion_lessons.book import format_minutes, load_book
from diffusion_lessons.cli import main
from diffusion_lessons.htmlbook import (
    PLACEHOLDER_ALT,
    SYLLABUS_PAGE,
    WIDGET_STATE,
    WIDGET_VIEW,
    add_alt_text,
    build_book,
    degrade_widgets,
    figure_title,
    page_name,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = load_book(ROOT / "book.toml")
PAGES = ["index.html", *([SYLLABUS_PAGE] if BOOK.syllabus else []), *(page_name(c) for c in BOOK.notebooks)]
CHAPTER_OF = {page_name(c): c for c in BOOK.notebooks}
FIRST_CHAPTER = page_name(BOOK.chapters[0])
SCREENSHOTS = {"index.html", SYLLABUS_PAGE, FIRST_CHAPTER, *(page_name(p) for p in BOOK.projects[:1])}


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> pathlib.Path:
    """The course book, built once per session from the committed notebooks."""
    out = tmp_path_factory.mktemp("book")
    assert [p.name for p in build_book(out, BOOK)] == PAGES
    return out


class _Links(HTMLParser):
    """Every href and src of a page, and every id."""

    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.add(attrs.get("id"))
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append((tag, attrs[key]))


def _parse(page: pathlib.Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_landing_page_has_the_course_and_every_chapter(built_book):
    text = html.unescape((built_book / "index.html").read_text(encoding="utf-8"))
    assert f"<h1>{BOOK.title}</h1>" in text and BOOK.description in text
    for chapter in BOOK.notebooks:
        assert f'href="{page_name(chapter)}"' in text and chapter.title in text
        assert f"{chapter.minutes:g} min on CPU" in text
        assert f"about {format_minutes(chapter.study_minutes)} of study" in text
        assert all(o in text for o in chapter.objectives), chapter.objectives
    if BOOK.syllabus:
        assert f'href="{SYLLABUS_PAGE}"' in text


@pytest.mark.parametrize("page", PAGES)
def test_every_page_has_contents_and_pager_and_only_local_links(built_book, page):
    parsed = _parse(built_book / page)
    text = (built_book / page).read_text(encoding="utf-8")
    assert 'class="dl-toc"' in text and text.count('class="dl-pager"') == 2
    assert 'aria-label="Previous and next page (top)"' in text and 'page (bottom)"' in text  # landmarks differ
    i = PAGES.index(page)
    hrefs = {link for tag, link in parsed.links if tag == "a"}
    assert (i == 0 or PAGES[i - 1] in hrefs) and (i == len(PAGES) - 1 or PAGES[i + 1] in hrefs)
    assert set(PAGES) <= hrefs  # the table of contents
    for tag, link in parsed.links:
        if tag in ("script", "link", "img") and not link.startswith("data:"):
            assert not link.startswith(("http:", "https:", "//")), f"{page} loads {link} from the network"
        if tag == "a" and link.startswith("#"):
            assert link[1:] in parsed.ids, f"{page}: no anchor {link}"
        elif not link.startswith(("data:", "http:", "https:", "#", "mailto:")):
            assert (built_book / link.split("?")[0].split("#")[0]).is_file(), f"{page}: {link} does not resolve"
    assert WIDGET_VIEW not in text and WIDGET_STATE not in text, "raw widget JSON on the page"


def test_chapter_pages_fold_quiz_answers_and_solutions(built_book):
    for chapter in BOOK.chapters:
        text = (built_book / page_name(chapter)).read_text(encoding="utf-8")
        nb = nbformat.read(BOOK.root / chapter.notebook, as_version=4)
        has_outputs = any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        if chapter.quiz and has_outputs:
            assert 'class="dl-quiz"' in text and "<details><summary>Answer</summary>" in text
        if chapter.exercises:
            assert '<details class="dl-solution">' in text
        if '<h2 id="' in text:
            assert '<ul class="dl-sections">' in text  # the chapter's sections in the table of contents


def test_mathjax_ships_with_the_book(built_book):
    assert (built_book / "_static" / "mathjax" / "MathJax.js").is_file()
    assert (built_book / "_static" / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()
    assert (built_book / "_static" / "book.css").is_file()


def _widget_notebook():
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {"model_name": "IntSliderModel", "state": {"description": "t", "value": 200}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}, "metadata": {}}]}},
    }
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    outputs = [
        nbformat.v4.new_output("execute_result", {WIDGET_VIEW: view, "text/plain": "interactive(children=(IntS"}),
        nbformat.v4.new_output("display_data", {WIDGET_VIEW: {"model_id": "bar"}, "text/plain": "100%|##| 9/9"}),
        nbformat.v4.new_output("execute_result", {WIDGET_VIEW: {"model_id": "q"}, "text/html": "<div>quiz</div>",
                                                  "text/plain": "Quiz(...)"}),
        nbformat.v4.new_output("display_data", {WIDGET_VIEW: {"model_id": "gone"}, "text/plain": "VBox(children=()"}),
    ]
    nb = nbformat.v4.new_notebook(metadata={"widgets": {WIDGET_STATE: {"state": state}}})
    nb.cells = [nbformat.v4.new_code_cell("slider()", outputs=outputs)]
    return nb


def test_widgets_degrade_to_their_static_fallbacks():
    nb = _widget_notebook()
    out = degrade_widgets(nb).cells[0].outputs
    assert WIDGET_VIEW in nb.cells[0].outputs[0]["data"]  # the input is left alone
    assert all(WIDGET_VIEW not in o.get("data", {}) for o in out)
    note, picture, bar, quiz, gone = out
    assert "saved at t = 200" in note["data"]["text/html"] and "image/png" in picture["data"]
    assert bar["data"] == {"text/plain": "100%|##| 9/9"}  # a progress bar keeps its text
    assert quiz["data"]["text/html"] == "<div>quiz</div>"
    assert "needs a live kernel" in gone["data"]["text/html"]  # no saved state: just the note
    assert "widgets" not in degrade_widgets(nb).metadata


def test_cli_builds_a_small_book(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    text = "# One\n\n## A section\n\nThe jump: $x_t = \\sqrt{\\bar\\alpha_t}\\,x_0$."
    nb.cells = [nbformat.v4.new_markdown_cell(text),
                nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    nbformat.write(nb, tmp_path / "one.ipynb")
    (tmp_path / "book.toml").write_text('[book]\ntitle = "Tiny"\ndescription = "A test"\n[[chapters]]\n'
                                        'notebook = "one.ipynb"\ntitle = "One"\nobjectives = ["x"]\nminutes = 1\n')
    assert main(["book", "--out", str(tmp_path / "site"), "--manifest", str(tmp_path / "book.toml")]) == 0
    assert "wrote 2 pages" in capsys.readouterr().out
    page = (tmp_path / "site" / "one.html").read_text(encoding="utf-8")
    assert "$x_t = \\sqrt{\\bar\\alpha_t}\\,x_0$" in page and 'href="#A-section"' in page


# ------------------------------------------------------------------ in a real browser
class _Server(http.server.SimpleHTTPRequestHandler):
    failed: ClassVar[list[str]] = []  # the paths the browser asked for that were not there

    def log_message(self, format, *args):
        pass

    def log_error(self, format, *args):
        self.failed.append(self.path)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the browser dropping a connection it no longer needs (on leaving a page) is no failure


def _chrome(profile: pathlib.Path):
    """Headless Chromium (Debian's chromium + chromium-driver), or a skip saying what is missing."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                   None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages, uncaught errors included
    # get() returns at once and the test polls, in short commands: a chapter page is 1-2 MB of inline
    # figures, and on a busy machine loading it can outlast the driver's 120 s limit for one command
    options.page_load_strategy = "none"
    return webdriver.Chrome(service=Service(driver), options=options)


PAGE_STATE = """
const math = Array.from(document.querySelectorAll('script[type^="math/tex"]'));
return {
  images: Array.from(document.querySelectorAll('.jp-OutputArea-output img')).map(i => i.complete && i.naturalWidth),
  math: math.length,
  typeset: math.filter(s => document.getElementById(s.id + '-Frame')).length,
  mathErrors: document.querySelectorAll('.MathJax_Error, merror').length,
  alts: Array.from(document.querySelectorAll('main img')).map(i => i.getAttribute('alt')),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
};
"""


def _axe(chrome) -> list[dict]:
    """axe-core's violations on the page, as {rule, impact, nodes, example}: every rule axe runs by default
    (WCAG 2.0-2.2 A and AA, and best practices). selenium-axe-python drives axe-core 4.9 (axe-selenium-python,
    its unmaintained parent, ships axe-core 3.1 of 2018)."""
    from selenium_axe_python import Axe

    axe = Axe(chrome)
    axe.inject()
    chrome.set_script_timeout(300)
    found = axe.run(options={"resultTypes": ["violations"]})  # the passes are not reported in full: 2x faster
    return [{"rule": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]),
             "example": f"{v['nodes'][0]['target']}: {v['nodes'][0]['failureSummary'][:300]}"}
            for v in found["violations"]]


def _skip_link_works(chrome) -> bool:
    """Tab from the top of the page reaches the skip link first; following it moves the focus into <main>."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    chrome.execute_script("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur();")
    ActionChains(chrome).send_keys(Keys.TAB).perform()
    first = chrome.execute_script("return document.activeElement.className")
    ActionChains(chrome).send_keys(Keys.ENTER).perform()
    return first == "dl-skip" and chrome.execute_script(
        "return document.activeElement.id === 'dl-content' && location.hash === '#dl-content'")


def test_book_in_headless_chromium(built_book, tmp_path):
    """Every page loads without console errors, its links resolve, its figures show with real alt text, its
    math is typeset, its skip link works, and axe-core finds no serious or critical accessibility violation."""
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.perf_counter()
    server = _QuietServer(("127.0.0.1", 0), functools.partial(_Server, directory=str(built_book)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    shots = pathlib.Path(os.environ.get("DIFFUSION_LESSONS_SCREENSHOTS", tmp_path))
    chrome = _chrome(tmp_path / "profile")
    report = {}
    try:
        for page in PAGES:
            url = base + page
            chrome.get(url)
            WebDriverWait(chrome, 900, poll_frequency=1).until(lambda c, url=url: c.execute_script(
                "return location.href === arguments[0] && document.readyState === 'complete'"
                " && document.documentElement.dataset.mathjax === 'done'", url))
            state = chrome.execute_script(PAGE_STATE)
            errors = [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], f"{page}: {errors}"
            assert all(state["images"]), f"{page}: a figure did not load: {state['images']}"
            if page in CHAPTER_OF:
                nb = nbformat.read(BOOK.root / CHAPTER_OF[page].notebook, as_version=4)
                pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                           for o in c.outputs)
                assert len(state["images"]) >= min(pngs, 1), f"{page}: no figures shown"
                dollars = any("$" in c.source for c in nb.cells if c.cell_type == "markdown")
                assert state["math"] > 0 or not dollars, f"{page}: no math typeset"
            assert state["typeset"] == state["math"] and state["mathErrors"] == 0, f"{page}: math not typeset"
            missing = [a for a in state["alts"] if not a or not a.strip() or a == PLACEHOLDER_ALT]
            assert not missing, f"{page}: {len(missing)} of {len(state['alts'])} figures without real alt text"
            violations = _axe(chrome)
            report[page] = {"figures": len(state["alts"]), "violations": violations}
            bad = [v for v in violations if v["impact"] in ("serious", "critical")]
            assert not bad, f"{page}: axe-core found {bad}"
            assert _skip_link_works(chrome), f"{page}: the skip link is not first or does not move the focus"
            for link in state["links"]:
                if link.startswith("#"):
                    assert link[1:] in state["ids"], f"{page}: anchor {link} leads nowhere"
                elif not link.startswith(("http:", "https:", "data:")):
                    with urllib.request.urlopen(base + link) as reply:
                        assert reply.status == 200, f"{page}: {link}"
            if page == FIRST_CHAPTER:  # at its first figure
                chrome.execute_script("const img = document.querySelector('.jp-OutputArea-output img');"
                                      "if (img) img.scrollIntoView({block: 'end'}); window.scrollBy(0, 80);")
            if page in SCREENSHOTS:
                chrome.save_screenshot(str(shots / f"book_{pathlib.Path(page).stem}.png"))
        assert _Server.failed == [], f"missing files: {_Server.failed}"
    finally:
        (shots / "axe_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
        chrome.quit()
        server.shutdown()
    print(f"\nbrowser test: {len(PAGES)} pages in {time.perf_counter() - start:.1f} s")


# ------------------------------------------------------------------ accessibility without a browser
def _figure(text: str = "<Figure>") -> nbformat.NotebookNode:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    return nbformat.v4.new_output("display_data", {"image/png": png, "text/plain": text})


def _alts(nb: nbformat.NotebookNode) -> list:
    return [o.get("metadata", {}).get("dl_alt") for c in nb.cells for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]


def test_alt_text_comes_from_the_cell_or_the_figures_title():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("fig", metadata={"alt": "Two  curves:\nβ falls."}, outputs=[_figure()]),
        nbformat.v4.new_code_cell("f", metadata={"alt": ["First grid.", "Second grid."]},
                                  outputs=[_figure(), nbformat.v4.new_output("stream", text="hi"), _figure()]),
        nbformat.v4.new_code_cell('ax.set_title(f"t={t}")\nfig.suptitle("Noise at three steps")', outputs=[_figure()]),
        nbformat.v4.new_code_cell('plotting.image_grid(x, title="Samples from the model")', outputs=[_figure()]),
        nbformat.v4.new_code_cell("fig", outputs=[_figure()]),  # no alt, no title: none (the tests reject it)
    ]
    assert _alts(add_alt_text(nb)) == ["Two curves: β falls.", "First grid.", "Second grid.", "Noise at three steps",
                                       "Samples from the model", None]
    assert "dl_alt" not in nb.cells[0].outputs[0].get("metadata", {})  # the input is left alone
    assert figure_title("%matplotlib inline") is None and figure_title('plt.title("")') is None


@pytest.mark.parametrize("alt", [["only one"], "x".split() * 3, 7])
def test_alt_text_list_must_match_the_figures(alt):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("f", metadata={"alt": alt}, outputs=[_figure(), _figure()])]
    with pytest.raises(ValueError, match=r"notebook, cell 1: metadata 'alt' must be a string or a list of 2"):
        add_alt_text(nb)


@pytest.mark.parametrize("chapter", BOOK.notebooks, ids=lambda c: c.name)
def test_every_figure_of_the_course_has_real_alt_text(chapter):
    """The browser test checks the pages; this checks the notebooks, also where no browser is installed."""
    nb = add_alt_text(degrade_widgets(nbformat.read(BOOK.root / chapter.notebook, as_version=4)), chapter.notebook)
    alts = _alts(nb)
    assert all(a and len(a.split()) >= 5 and a != PLACEHOLDER_ALT for a in alts), (chapter.name, alts)


def test_pages_are_repaired_for_screen_readers(tmp_path, capsys):
    """Headings never skip a level (a quiz's h4 under an h2), ids nbconvert percent-encoded are plain, a skip
    link leads to the content, and the syllabus's links to notebooks lead to their pages."""
    nb = nbformat.v4.new_notebook()
    quiz = "<div class='dl-quiz'><h4>Quiz</h4><h5>Q1</h5></div>"
    shown = nbformat.v4.new_output("display_data", {"text/html": quiz})
    nb.cells = [nbformat.v4.new_markdown_cell("# One\n\n## Cosine — and why"),
                nbformat.v4.new_code_cell("quiz", outputs=[shown]),
                nbformat.v4.new_markdown_cell("A sample answer.", metadata={"tags": ["solution"]}),
                nbformat.v4.new_markdown_cell("- [ ] runs top to bottom\n- [ ] seeds stated")]
    nbformat.write(nb, tmp_path / "01_one.ipynb")
    (tmp_path / "syllabus.md").write_text("# Syllabus\n\nWeek 1: [lesson 01](../notebooks/01_one.ipynb).\n")
    (tmp_path / "book.toml").write_text('[book]\ntitle = "Tiny"\nsyllabus = "syllabus.md"\n[[chapters]]\n'
                                        'notebook = "01_one.ipynb"\ntitle = "One"\nobjectives = ["x"]\nminutes = 1\n')
    assert main(["book", "--out", str(tmp_path / "site"), "--manifest", str(tmp_path / "book.toml")]) == 0
    page = (tmp_path / "site" / "01_one.html").read_text(encoding="utf-8")
    main_part = page[page.index("<main"):]
    levels = [int(h) for h in re.findall(r"<h([1-6])[ >]", main_part)]
    assert levels == [1, 2, 3, 4] and "%E2" not in page
    assert 'id="Cosine-and-why"' in page and 'href="#Cosine-and-why"' in page
    assert '<a class="dl-skip" href="#dl-content">' in page and 'id="dl-content"' in page
    assert re.search(r'<details class="dl-solution"><summary>Sample answer.*?A sample answer\.', page, re.S)
    assert page.count('aria-label="runs top to bottom"') == 1 and 'aria-label="seeds stated"' in page
    syllabus = (tmp_path / "site" / SYLLABUS_PAGE).read_text(encoding="utf-8")
    assert 'href="01_one.html"' in syllabus and 'href="syllabus.html"' in page
    (tmp_path / "syllabus.md").unlink()
    assert main(["book", "--out", str(tmp_path / "site2"), "--manifest", str(tmp_path / "book.toml")]) == 2
    assert "syllabus names 'syllabus.md', which is not a file" in capsys.readouterr().err
