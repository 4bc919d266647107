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

import copy
import html
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .book import Book, Chapter, load_book
from .runtime import kernel_env

__all__ = ["TEMPLATES", "build_book", "degrade_widgets", "page_name"]

TEMPLATES = Path(__file__).parent / "templates"  # nbconvert template folder; the book's template is "book"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# A widget's text/plain is its Python repr, e.g. "interactive(children=(IntSlider(value=200, ..."
_WIDGET_REPR = re.compile(r"^\w+\((children|value|description|layout|options)=")
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


# ------------------------------------------------------------------ navigation
def _link(href: str, text: str, cls: str = "") -> str:
    return f'<a href="{html.escape(href)}"{f" class={cls!r}" if cls else ""}>{html.escape(text)}</a>'


def _toc(book: Book, current: Chapter | None) -> str:
    """The table of contents: the landing page, the chapters; under the current one, a placeholder for its sections."""
    items = [f"<li>{_link('index.html', 'About this course', 'dl-current' if current is None else '')}</li>"]
    for n, c in enumerate(book.chapters, 1):
        here = c == current
        sections = "<!--dl-sections-->" if here else ""
        items.append(f"<li>{_link(page_name(c), f'{n:02d}. {c.title}', 'dl-current' if here else '')}{sections}</li>")
    return '<p class="dl-toc-title">Contents</p><ol class="dl-chapters">' + ''.join(items) + '</ol>'


def _pager(book: Book, index: int | None) -> str:
    """Previous/next links; ``index`` is the chapter's position, None for the landing page."""
    pages = [("index.html", "About this course")]
    pages += [(page_name(c), f"{n:02d}. {c.title}") for n, c in enumerate(book.chapters, 1)]
    here = 0 if index is None else index + 1
    prev = _link(pages[here - 1][0], f"← {pages[here - 1][1]}", "dl-prev") if here > 0 else "<span></span>"
    nxt = _link(pages[here + 1][0], f"{pages[here + 1][1]} →", "dl-next") if here + 1 < len(pages) else "<span></span>"
    return f'<nav class="dl-pager" aria-label="Previous and next">{prev}{nxt}</nav>'


_H2 = re.compile(r'<h2 id="([^"]+)">(.*?)<a class="anchor-link"', re.S)


def _add_sections(page: str) -> str:
    """Fill the current chapter's section list from the page's own <h2> headings (ids made by nbconvert)."""
    sections = "".join(f'<li><a href="#{i}">{text.strip()}</a></li>' for i, text in _H2.findall(page))
    return page.replace("<!--dl-sections-->", f'<ul class="dl-sections">{sections}</ul>' if sections else "", 1)


def _landing(book: Book) -> str:
    """The landing page's body: the course, then each chapter with its objectives and minutes."""
    e = html.escape
    parts = [f"<h1>{e(book.title)}</h1>", f"<p class='dl-description'>{e(book.description)}</p>"]
    if book.authors:
        parts.append(f"<p class='dl-authors'>{e(', '.join(book.authors))}</p>")
    total = sum(c.minutes for c in book.chapters)
    parts.append(f"<h2>Chapters</h2><p>{len(book.chapters)} lessons, about {total:g} minutes of computing on a "
                 "laptop CPU in all; each is a Jupyter notebook you can run and change.</p>")
    parts.append("<ol class='dl-chapter-list'>")
    for c in book.chapters:
        objectives = "".join(f"<li>{e(o)}</li>" for o in c.objectives)
        exercises = f", {len(c.exercises)} exercise{'s' * (len(c.exercises) != 1)}" if c.exercises else ""
        parts.append(f"<li><h3>{_link(page_name(c), c.title)}</h3>"
                     f"<p class='dl-meta'>about {c.minutes:g} min on CPU{exercises}{', a quiz' if c.quiz else ''}"
                     f" · <code>{e(c.notebook)}</code></p><p>You will be able to:</p><ul>{objectives}</ul></li>")
    parts.append("</ol>")
    return f"<div class='jp-RenderedHTMLCommon dl-landing'>{''.join(parts)}</div>"


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

    def render(nb: NotebookNode, title: str, chapter: Chapter | None, index: int | None, landing: str = "") -> str:
        resources = {"metadata": {"name": title}, "book": {
            "title": book.title, "toc": _toc(book, chapter), "pager": _pager(book, index), "landing": landing,
            "footer": footer}}
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        return _add_sections(body)

    pages = {"index.html": render(nbformat.v4.new_notebook(), book.title, None, None, _landing(book))}
    for i, chapter in enumerate(book.chapters):
        path = book.root / chapter.notebook
        nb = nbformat.read(path, as_version=4)
        if execute:
            nb = _execute(nb, path, budget)
        elif not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"):
            print(f"warning: {chapter.notebook} has no outputs; its page shows code only "
                  "(run it, or build with --execute)", file=sys.stderr)
        pages[page_name(chapter)] = render(degrade_widgets(nb), f"{chapter.title} · {book.title}", chapter, i)

    out.mkdir(parents=True, exist_ok=True)
    _copy_static(out)
    written = []
    for name, text in pages.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written
