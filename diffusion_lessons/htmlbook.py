"""The course book: a static HTML site built from book.toml and the executed lesson notebooks.

    diffusion-lessons book [--out _build/book] [--execute]      # or: make book

The site has a landing page (the course's title, description, and each chapter with
its objectives and minutes) and one page per chapter, rendered by nbconvert's
JupyterLab template (code highlighted by Pygments, figures embedded), with the book's
navigation added: a table of contents (chapters, and the current chapter's sections)
and previous/next links on every page.

It builds offline and reads offline: math is typeset by MathJax 2, copied from the
``jupyter-server-mathjax`` package into ``_static/mathjax``, and the pages load nothing
from the network (no require.js, no widget manager). Widget outputs degrade to what
can be shown without a kernel: a quiz to its static HTML (answers folded in
``<details>``), a progress bar to its text, a slider to a note and the picture it showed
when the notebook was saved. Solution code is folded away too.

By default the pages show the outputs committed with the notebooks (CI checks them with
nbval); ``--execute`` runs each notebook first, in a fresh kernel.
"""

from __future__ import annotations

import ast
import copy
import html
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .book import Book, Chapter, format_minutes, load_book
from .runtime import kernel_env

__all__ = ["PLACEHOLDER_ALT", "TEMPLATES", "add_alt_text", "build_book", "degrade_widgets", "figure_title", "page_name"]

TEMPLATES = Path(__file__).parent / "templates"  # nbconvert template folder; the book's template is "book"
SYLLABUS_PAGE = "syllabus.html"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# A widget's text/plain is its Python repr, e.g. "interactive(children=(IntSlider(value=200, ..."
_WIDGET_REPR = re.compile(r"^\w+\((children|value|description|layout|options)=")
PLACEHOLDER_ALT = "No description has been provided for this image"  # what nbconvert writes when a figure has none
_IMAGES = ("image/png", "image/jpeg")
_CONTROL = re.compile(r"(Slider|Dropdown|Checkbox|ToggleButtons|RadioButtons|Select|Text)Model$")


def page_name(chapter: Chapter) -> str:
    """The chapter's page in the book, e.g. "01_markov_noising.html".

    Guide: docs/teaching.md
    """
    return f"{chapter.name}.html"


# ------------------------------------------------------------------ widgets without a kernel
def _widget_fallback(model_id: str | None, state: dict) -> list[NotebookNode]:
    """Static outputs for a widget: a note naming its controls and their saved values, then
    whatever its Output widgets showed when the notebook was saved (e.g. the slider's picture)."""
    controls, shown = [], []

    def walk(mid: str) -> None:
        model = state.get(mid.removeprefix("IPY_MODEL_"))
        if model is None:
            return
        s = model.get("state", {})
        if _CONTROL.search(model.get("model_name", "")) and s.get("description"):
            value = s.get("value", s.get("index"))
            controls.append(f"{s['description']} = {value}")
        if model.get("model_name") == "OutputModel":
            shown.extend(nbformat.from_dict(o) for o in s.get("outputs", []))
        for child in s.get("children", []):
            walk(child)

    if model_id:
        walk(model_id)
    where = f" (saved at {', '.join(controls)})" if controls else ""
    note = (f"<p class='dl-widget-note'>An interactive widget{html.escape(where)}: it needs a live kernel. "
            "Open the notebook in Jupyter to use it." + (" Below, what it showed when the notebook was saved."
                                                          if shown else "") + "</p>")
    return [nbformat.v4.new_output("display_data", {"text/html": note}), *shown]


def degrade_widgets(nb: NotebookNode) -> NotebookNode:
    """A copy of ``nb`` whose widget outputs are replaced by static ones, and without widget state.

    An output with its own static rendering keeps it (a quiz: text/html; a tqdm bar:
    text/plain); a widget whose text/plain is only its repr becomes a note and the
    outputs saved in its state.

    Guide: docs/teaching.md
    """
    nb = copy.deepcopy(nb)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                outputs.append(out)
                continue
            view = data.pop(WIDGET_VIEW)
            if "text/html" in data or not _WIDGET_REPR.match(data.get("text/plain", "repr(")):
                outputs.append(out)
            else:
                outputs += _widget_fallback(view.get("model_id"), state)
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return nb


# ------------------------------------------------------------------ alt text
def figure_title(source: str) -> str | None:
    """The first title a cell's code gives its figure as a plain string: ``title="..."``, ``suptitle("...")``,
    ``set_title("...")`` or ``plt.title("...")``; None if it gives none (or only f-strings).

    Guide: docs/teaching.md
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics and the like
        return None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        texts = [k.value for k in node.keywords if k.arg in ("title", "suptitle")]
        if name in ("suptitle", "set_title", "title") and node.args:
            texts.insert(0, node.args[0])
        for text in texts:
            if isinstance(text, ast.Constant) and isinstance(text.value, str) and text.value.strip():
                return " ".join(text.value.split())
    return None


def add_alt_text(nb: NotebookNode, where: str = "notebook") -> NotebookNode:
    """A copy of ``nb`` whose figures carry their alt text in ``output.metadata["dl_alt"]`` (the book's template
    writes it into ``<img alt=...>``).

    A code cell's ``metadata["alt"]`` gives it: one string for all the cell's figures, or a list with one string
    per figure, in the order they are shown (after ``degrade_widgets``). Without it, the figure's title in the
    cell's code (``figure_title``). A figure with neither gets none, and nbconvert's placeholder, which the tests
    reject.

    Guide: docs/teaching.md
    """
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        figures = [o for o in cell.get("outputs", []) if any(m in o.get("data", {}) for m in _IMAGES)]
        alt = cell.metadata.get("alt")
        if isinstance(alt, str):
            alt = [alt] * len(figures)
        elif alt is None:
            title = figure_title(cell.source)
            alt = [title] * len(figures) if title else []
        elif not (isinstance(alt, list) and all(isinstance(a, str) for a in alt)) or len(alt) != len(figures):
            raise ValueError(f"{where}, cell {index + 1}: metadata 'alt' must be a string or a list of "
                             f"{len(figures)} strings (one per figure it shows), got {alt!r}")
        for output, text in zip(figures, alt, strict=False):
            if text.strip():
                output.setdefault("metadata", {})["dl_alt"] = " ".join(text.split())
    return nb


# ------------------------------------------------------------------ navigation
def _link(href: str, text: str, cls: str = "") -> str:
    return f'<a href="{html.escape(href)}"{f" class={cls!r}" if cls else ""}>{html.escape(text)}</a>'


def _pages(book: Book) -> list[tuple[str, str, Chapter | None]]:
    """Every page of the book in reading order: (file, its title in the contents, its chapter or None)."""
    pages = [("index.html", "About this course", None)]
    if book.syllabus:
        pages.append((SYLLABUS_PAGE, "Syllabus: the course as a module", None))
    pages += [(page_name(c), f"{c.label}. {c.title}", c) for c in book.notebooks]
    return pages


def _toc(book: Book, current: str) -> str:
    """The table of contents: the front pages, the lessons, the projects; under the current chapter, a
    placeholder for its sections. ``current`` is the current page's file."""

    def item(href: str, text: str) -> str:
        here = href == current
        return f"<li>{_link(href, text, 'dl-current' if here else '')}{'<!--dl-sections-->' if here else ''}</li>"

    pages = _pages(book)
    front = [item(h, t) for h, t, c in pages if c is None]
    lessons = [item(h, t) for h, t, c in pages if c is not None and not c.project]
    projects = [item(h, t) for h, t, c in pages if c is not None and c.project]
    toc = '<p class="dl-toc-title">Contents</p><ul class="dl-chapters">' + "".join(front) + "</ul>"
    toc += '<p class="dl-toc-title">Lessons</p><ol class="dl-chapters">' + "".join(lessons) + "</ol>"
    if projects:
        toc += '<p class="dl-toc-title">Projects</p><ol class="dl-chapters">' + "".join(projects) + "</ol>"
    return toc


def _pager(book: Book, current: str, where: str = "top") -> str:
    """Previous/next links around the page ``current`` (its file), at the ``where`` ("top", "bottom") of the page."""
    pages = _pages(book)
    here = [h for h, _, _ in pages].index(current)
    prev = _link(pages[here - 1][0], f"← {pages[here - 1][1]}", "dl-prev") if here > 0 else "<span></span>"
    nxt = _link(pages[here + 1][0], f"{pages[here + 1][1]} →", "dl-next") if here + 1 < len(pages) else "<span></span>"
    return f'<nav class="dl-pager" aria-label="Previous and next page ({where})">{prev}{nxt}</nav>'


_HEADING = re.compile(r"^h([1-6])$")


def _accessible(page: str) -> str:
    """Three repairs of nbconvert's page: headings never skip a level (a quiz's <h4> under a lesson's <h2> becomes
    an <h3>); a Markdown checklist's boxes are named by their items; and ids that nbconvert percent-encoded (a
    heading with "—") are spelled plainly, with the links to them, so that a link's target is found by every
    reader."""
    from urllib.parse import unquote

    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, features="html.parser")
    main = soup.find("main") or soup
    previous = 0
    for heading in main.find_all(_HEADING):
        level = int(heading.name[1])
        if level > previous + 1:
            level = previous + 1
            heading.name = f"h{level}"
        previous = level
    for box in main.select("li.task-list-item > input"):  # a Markdown checklist's boxes: named by their item
        box["aria-label"] = " ".join(box.parent.get_text(" ", strip=True).split())[:200] or "checklist item"
    renamed = {}
    for element in soup.find_all(id=re.compile("%")):
        new = re.sub(r"-{2,}", "-", re.sub(r"[^\w.,:$()-]", "-", unquote(element["id"]), flags=re.ASCII))
        renamed[element["id"]] = element["id"] = new
    if renamed:
        for link in soup.find_all("a", href=re.compile("^#")):
            link["href"] = "#" + renamed.get(link["href"][1:], link["href"][1:])
    return str(soup)


_H2 = re.compile(r'<h2 id="([^"]+)">(.*?)<a class="anchor-link"', re.S)


def _add_sections(page: str) -> str:
    """Fill the current chapter's section list from the page's own <h2> headings (ids made by nbconvert)."""
    sections = "".join(f'<li><a href="#{i}">{text.strip()}</a></li>' for i, text in _H2.findall(page))
    return page.replace("<!--dl-sections-->", f'<ul class="dl-sections">{sections}</ul>' if sections else "", 1)


def _chapter_item(c: Chapter) -> str:
    e = html.escape
    objectives = "".join(f"<li>{e(o)}</li>" for o in c.objectives)
    exercises = f", {len(c.exercises)} checked exercise{'s' * (len(c.exercises) != 1)}" if c.exercises else ""
    study = f"about {format_minutes(c.study_minutes)} of study · " if c.study_minutes else ""
    return (f"<li><h3>{_link(page_name(c), f'{c.label}. {c.title}')}</h3>"
            f"<p class='dl-meta'>{study}{c.minutes:g} min on CPU{exercises}{', a quiz' if c.quiz else ''}"
            f" · <code>{e(c.notebook)}</code></p><p>You will be able to:</p><ul>{objectives}</ul></li>")


def _landing(book: Book) -> str:
    """The landing page's body: the course, then each chapter and project with its objectives and times."""
    e = html.escape
    parts = [f"<h1>{e(book.title)}</h1>", f"<p class='dl-description'>{e(book.description)}</p>"]
    if book.authors:
        parts.append(f"<p class='dl-authors'>{e(', '.join(book.authors))}</p>")
    total = sum(c.minutes for c in book.chapters)
    study = sum(c.study_minutes or 0 for c in book.chapters)
    hours = f"about {study / 60:.0f} hours of study in all (reading, exercises and quizzes), " if study else ""
    parts.append(f"<h2>Lessons</h2><p>{len(book.chapters)} lessons: {hours}of which about {total:g} minutes are "
                 "computing on a laptop CPU. Each is a Jupyter notebook you can run and change.")
    if book.syllabus:
        parts.append(f" The {_link(SYLLABUS_PAGE, 'syllabus')} builds a 6-8 week module from them and says how "
                     "the study times are estimated.")
    parts.append("</p><ol class='dl-chapter-list'>" + "".join(_chapter_item(c) for c in book.chapters) + "</ol>")
    if book.projects:
        parts.append(f"<h2>Projects</h2><p>{len(book.projects)} open-ended projects to assign and grade: each has a "
                     "brief, a rubric, an autograded part and a written part.</p>")
        parts.append("<ol class='dl-chapter-list'>" + "".join(_chapter_item(c) for c in book.projects) + "</ol>")
    return f"<div class='jp-RenderedHTMLCommon dl-landing'>{''.join(parts)}</div>"


_NOTEBOOK_LINK = re.compile(r"\]\((?:\.\./)?notebooks/([\w-]+)\.ipynb(#[\w-]*)?\)")


def _syllabus(book: Book) -> NotebookNode:
    """The syllabus (Markdown) as a one-cell notebook; its links to notebooks become links to their pages."""
    if not (book.root / book.syllabus).is_file():
        raise ValueError(f"book.toml's syllabus names {book.syllabus!r}, which is not a file beside book.toml")
    text = (book.root / book.syllabus).read_text(encoding="utf-8")
    names = {c.name for c in book.notebooks}

    def page(m: re.Match) -> str:
        if m.group(1) not in names:
            raise ValueError(f"{book.syllabus} links to notebooks/{m.group(1)}.ipynb, which is not in book.toml")
        return f"]({m.group(1)}.html{m.group(2) or ''})"

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(_NOTEBOOK_LINK.sub(page, text))]
    return nb


# ------------------------------------------------------------------ building
def _copy_static(out: Path) -> None:
    """book.css and MathJax (from the jupyter-server-mathjax package) into out/_static."""
    import jupyter_server_mathjax

    static = out / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copy2(TEMPLATES / "book" / "static" / "book.css", static / "book.css")
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "mathjax" / "MathJax.js").is_file():
        shutil.copytree(mathjax, static / "mathjax", dirs_exist_ok=True)


def _execute(nb: NotebookNode, path: Path, budget: str) -> NotebookNode:
    from nbclient import NotebookClient

    env = kernel_env(budget)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    return client.execute(env=env)


def build_book(out: str | Path = "_build/book", book: Book | None = None, execute: bool = False,
               budget: str = "learner") -> list[Path]:
    """Build the HTML book of ``book`` (default: book.toml) into ``out``; returns the pages written.

    ``execute`` runs each notebook first (with ``budget``: "learner" or "smoke");
    otherwise the committed outputs are shown.

    Guide: docs/teaching.md
    """
    from nbconvert import HTMLExporter

    book = load_book() if book is None else book
    out = Path(out)
    exporter = HTMLExporter(template_name="book", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input_prompt=True, exclude_output_prompt=True, language_code=book.language)
    footer = (f"{html.escape(book.title)} · built from the course's notebooks with nbconvert; "
              "math by MathJax, served from this site.")

    def render(nb: NotebookNode, title: str, page: str, landing: str = "") -> str:
        resources = {"metadata": {"name": title}, "book": {
            "title": book.title, "toc": _toc(book, page), "pager": _pager(book, page),
            "pager_bottom": _pager(book, page, "bottom"), "landing": landing, "footer": footer}}
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        return _add_sections(_accessible(body))

    pages = {"index.html": render(nbformat.v4.new_notebook(), book.title, "index.html", _landing(book))}
    if book.syllabus:
        pages[SYLLABUS_PAGE] = render(_syllabus(book), f"Syllabus · {book.title}", SYLLABUS_PAGE)
    for chapter in book.notebooks:
        path = book.root / chapter.notebook
        nb = nbformat.read(path, as_version=4)
        if execute:
            nb = _execute(nb, path, budget)
        elif not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"):
            print(f"warning: {chapter.notebook} has no outputs; its page shows code only "
                  "(run it, or build with --execute)", file=sys.stderr)
        shown = add_alt_text(degrade_widgets(nb), chapter.notebook)
        pages[page_name(chapter)] = render(shown, f"{chapter.title} · {book.title}", page_name(chapter))

    out.mkdir(parents=True, exist_ok=True)
    _copy_static(out)
    written = []
    for name, text in pages.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written
