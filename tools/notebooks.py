"""The notebooks readers and students open: plain Jupyter Markdown generated from the MyST sources.

`tools.pairs sync` writes `chapters/<slug>.ipynb` with it (the reader edition, written solutions folded, autograded
ones left out) and `tools.student` the student edition (no solution, no spoiler). Colab and Jupyter do not speak
MyST, so the book's one converter turns each chapter's markdown into what they
render: theorems, definitions and exercises as bold-titled blocks, solutions as `<details>` (instructor) or not
at all (student), citations as author-year text linked to the paper, cross-references as links to the book's
HTML, `$$...$$` math without MyST labels, and after each exercise an empty answer cell. Code cells are the
chapter's own, unchanged. Blocks wrapped in `<!-- spoiler: label -->` ... `<!-- /spoiler -->` answer an
exercise: the student edition drops them.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

from tools import book, myst

MD_LINK = re.compile(r"\[([^\]]*)\]\(((?:\.\./|\./)?(?:chapters/)?[\w-]+)\.(?:md|ipynb)(#[\w-]+)?\)")
EQ_LABEL = re.compile(r"(\$\$)\s*\([\w:-]+\)\s*$")
KINDS = {"prf:algorithm": "Algorithm", "prf:proof": "Proof", "note": "Note", "warning": "Warning", "tip": "Tip"}
SOLUTION_MARK = re.compile(r"^[ \t]*# (BEGIN|END) SOLUTION[ \t]*\n", re.M)  # otter's, in autograded solutions
MYST_LEFTOVERS = ("```{", ":::{", "{cite", "{prf:", "{ref}", "{eq}", "{numref}", "{doc}", ":label:", ":class:")


@dataclass
class Book:
    """What the converter needs to know about the whole book: titles, labels, numbers, references."""

    base_url: str
    titles: dict[str, str] = field(default_factory=dict)  # slug -> chapter title
    numbers: dict[str, int] = field(default_factory=dict)  # slug -> chapter number
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (slug, text), "Lemma 3.1"
    titles_of: dict[str, str] = field(default_factory=dict)  # label of a numbered box -> its title
    refs: dict[str, dict] = field(default_factory=dict)  # bib key -> {"short", "year", "url", "full"}


def base_url() -> str:
    """Return the published HTML's address (`html.baseurl` of _config.yml, else GitHub Pages of the repo)."""
    config = yaml.safe_load((book.ROOT / "_config.yml").read_text())
    url = (config.get("html") or {}).get("baseurl")
    if not url:
        owner, repo = config["repository"]["url"].rstrip("/").split("/")[-2:]
        url = f"https://{owner}.github.io/{repo}/"
    return url.rstrip("/") + "/"


def chapter_numbers() -> dict[str, int]:
    """Return the number of each chapter in numbered parts of `_toc.yml` (as the HTML numbers them)."""
    toc = yaml.safe_load((book.ROOT / "_toc.yml").read_text())
    out, n = {}, 0
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            if part.get("numbered") and entry.get("file", "").startswith("chapters/"):
                n += 1
                out[entry["file"].split("/", 1)[1]] = n
    return out


TEX_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303"}


def _clean_tex(text: str) -> str:
    """Return BibTeX text as plain Unicode: accents composed ({\\"o} -> ö), braces dropped, TeX dashes and quotes."""
    accent = lambda m: m.group(2) + TEX_ACCENTS[m.group(1)]  # noqa: E731
    text = re.sub(r"\{\\(['`^\"~])\s*\{?(\w)\}?\}", accent, text)  # {\'e} -> é
    text = re.sub(r"\\(['`^\"~])\{?(\w)\}?", accent, text)
    text = unicodedata.normalize("NFC", text)
    return text.replace("{", "").replace("}", "").replace("``", '"').replace("''", '"').replace("--", "–")


def venue(ref: dict) -> str:
    """Return " Venue." for a reference list entry, or "" when the entry has no venue."""
    return f" {ref['venue']}." if ref["venue"] else ""


def bibliography(path: Path | None = None) -> dict[str, dict]:
    """Return author-year labels, links and full entries of `references.bib` (years disambiguated 2019a/b)."""
    from pybtex.database import parse_file

    data = parse_file(str(path or book.ROOT / "references.bib"))
    out = {}
    for key, entry in data.entries.items():
        people = entry.persons.get("author", [])
        last = [_clean_tex(" ".join(p.last_names)) for p in people]
        short = last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2 else f"{last[0]} et al."
        f = entry.fields
        url = f.get("url") or (f"https://doi.org/{f['doi']}" if f.get("doi") else "")
        arxiv = re.search(r"arXiv[: ]\s*(\d{4}\.\d{4,5})", f.get("note", "") + " " + f.get("journal", ""))
        if not url and arxiv:
            url = f"https://arxiv.org/abs/{arxiv.group(1)}"
        if not url and f.get("eprint"):  # an arXiv preprint (@misc with eprint)
            url = f"https://arxiv.org/abs/{f['eprint']}"
        venue = f.get("booktitle") or f.get("journal") or f.get("institution") or ""
        venue = venue or (f"arXiv:{f['eprint']}" if f.get("eprint") else "")
        names = ", ".join(_clean_tex(f"{' '.join(p.first_names)} {' '.join(p.last_names)}") for p in people)
        out[key] = {"short": short, "year": f.get("year", ""), "url": url, "title": _clean_tex(f.get("title", "")),
                    "venue": _clean_tex(venue), "names": names}  # fmt: skip
    groups: dict[tuple[str, str], list[str]] = {}
    for key, ref in out.items():
        groups.setdefault((ref["short"], ref["year"]), []).append(key)
    for keys in groups.values():
        if len(keys) > 1:
            for letter, key in zip("abcdefgh", sorted(keys)):
                out[key]["year"] += letter
    return out


def student_url() -> str:
    """Return the student edition's address (published under `student/` of the book's address)."""
    return base_url() + "student/"


def context(student: bool = False) -> Book:
    """Return the converter's view of the book (titles, numbers and labels of every chapter; the bibliography).

    For the student edition its links point at the student edition, never at the one with solutions.
    """
    ctx = Book(base_url=student_url() if student else base_url(), numbers=chapter_numbers(), refs=bibliography())
    for slug in book.chapter_slugs():
        source = book.chapter_source(slug)
        if not source.exists():
            continue
        text = source.read_text()
        title = re.search(r"^# (.+)$", text, re.M)
        ctx.titles[slug] = title.group(1).strip() if title else slug
        lines = text.split("\n")
        for i, label in myst.targets(text):  # (label)= above a heading
            heading = next((x for x in lines[i + 1 : i + 3] if x.startswith("#")), "")
            ctx.labels[label] = (slug, heading.lstrip("#").strip() or ctx.titles[slug])
        counts: dict[str, int] = {}
        for block in myst.directives(text):
            kind = block.name.split(":")[-1].capitalize()
            if block.name.startswith("prf:") and block.name != "prf:proof":  # numbered as sphinx-proof: per kind
                counts[kind] = counts.get(kind, 0) + 1
                chapter = ctx.numbers.get(slug)
                number = f"{chapter}.{counts[kind]}" if chapter else str(counts[kind])
                if block.label:
                    ctx.labels[block.label] = (slug, f"{kind} {number}")
                    ctx.titles_of[block.label] = block.arg
            elif block.label:
                ctx.labels[block.label] = (slug, f"{kind} ({block.arg})" if block.arg else kind)
    return ctx


def _cite(keys: str, ctx: Book, textual: bool) -> str:
    parts = []
    for key in (k.strip() for k in keys.split(",")):
        ref = ctx.refs.get(key)
        if ref is None:
            raise ValueError(f"unknown citation key {key!r} (not in references.bib)")
        text = f"{ref['short']} ({ref['year']})" if textual else f"{ref['short']} {ref['year']}"
        parts.append(f"[{text}]({ref['url']})" if ref["url"] else text)
    return "; ".join(parts) if textual else "(" + "; ".join(parts) + ")"


def _link(slug: str, anchor: str, ctx: Book) -> str:
    return f"{ctx.base_url}chapters/{slug}.html" + (f"#{anchor}" if anchor else "")


def convert_inline(text: str, ctx: Book, slug: str, cited: list[str]) -> str:
    """Rewrite MyST roles and links to chapter sources as plain Markdown."""

    def role(m: re.Match) -> str:
        name, body = m.group(1), m.group(2)
        if name in ("cite:p", "cite:t", "cite"):
            cited.extend(k.strip() for k in body.split(",") if k.strip() not in cited)
            return _cite(body, ctx, textual=name == "cite:t")
        if name == "math":
            return f"${body}$"
        explicit = re.fullmatch(r"(.*?)\s*<([\w:-]+)>", body, re.S)
        text, label = (explicit.group(1), explicit.group(2)) if explicit else (None, body.strip())
        if name in ("prf:ref", "ref", "numref", "eq", "doc"):
            where, default = ctx.labels.get(label, (slug, label))
            shown = text or (f"equation ({label})" if name == "eq" else default)
            return f"[{shown}](#{label})" if where == slug else f"[{shown}]({_link(where, label, ctx)})"
        return m.group(0)

    def link(m: re.Match) -> str:
        text, target, anchor = m.group(1), m.group(2).split("/")[-1], (m.group(3) or "").lstrip("#")
        if target in ctx.titles:
            return f"[{text or ctx.titles[target]}]({_link(target, anchor, ctx)})"
        return f"[{text or target}]({ctx.base_url}{target}.html{'#' + anchor if anchor else ''})"

    return MD_LINK.sub(link, myst.ROLE.sub(role, text))


@dataclass
class Converted:
    """The markdown of one MyST cell, split where an answer cell follows an exercise."""

    chunks: list[str]
    answers_after: list[str]  # exercise numbers, one per chunk boundary


AUTOGRADED_NOTE = (
    "*This exercise is autograded: its solution and its tests belong to the instructor's build of the assignment "
    "(`make assignments`), and no published page or notebook shows them.*"
)


def solution_parts(body: str) -> tuple[str, list[tuple[str, bool]], str]:
    """Split a solution's body into (python solution, autograder test functions (source, hidden), the prose left).

    An exercise is autograded when its solution holds a ```` ```python ```` block (the solution, with `# BEGIN
    SOLUTION` / `# END SOLUTION` lines) and `{code-block} python` blocks captioned "Autograder tests (public)" or
    "(hidden)", one test function `def test_...(name, ...)` each.
    """
    import ast

    code, tests, rest = "", [], []
    lines, last = body.split("\n"), 0
    for block in myst.blocks(body):
        if not block.is_python or block.name == "code-cell":
            continue
        rest += lines[last : block.start]
        last = block.end
        caption = block.options.get("caption", "")
        if "autograder tests" in caption.lower():
            for node in ast.parse(block.body).body:
                if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                    tests.append((ast.get_source_segment(block.body, node), "hidden" in caption.lower()))
        elif not code and not block.name:
            code = block.body.rstrip("\n")
        else:
            rest += lines[block.start : block.end]
    rest += lines[last:]
    return code, tests, "\n".join(rest).strip()


def public_solution(body: str) -> str:
    """Return a solution's body as published: an autograded one keeps its prose, without its code and tests."""
    code, tests, rest = solution_parts(body)
    if not tests:
        return body
    return (rest + "\n\n" if rest else "") + AUTOGRADED_NOTE


def public_myst(text: str) -> str:
    """Return MyST text with every autograded solution's code and tests removed (the published editions)."""
    solutions = myst.directives(text, "solution")
    return myst.replace_blocks(text, {b.start: myst.render_block(b, public_solution(b.body)) for b in solutions})


def pyobject_source(path: Path, name: str) -> str:
    """Return the source of function or class `name` (`Class.method` too) of a Python file, as Sphinx's
    `literalinclude :pyobject:` shows it; raise ValueError with the names there when it has none."""
    import ast

    text = path.read_text()
    scope: list = ast.parse(text).body
    node = None
    for part in name.split("."):
        node = next((n for n in scope if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == part), None)
        if node is None:
            raise ValueError(f"{path.name} has no {name!r} (literalinclude :pyobject:)")
        scope = node.body
    lines = text.splitlines()
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
    return textwrap.dedent("\n".join(lines[start : node.end_lineno]))


class Converter:
    """Convert one chapter's MyST markdown cells, numbering its exercises as the HTML does."""

    def __init__(self, slug: str, ctx: Book, student: bool, standalone: bool = False):
        """`standalone`: the text leaves its chapter (an assignment), so every cross-reference links to a page."""
        self.slug, self.ctx, self.student, self.standalone = slug, ctx, student, standalone
        self.exercise = 0
        self.exercise_numbers: dict[str, str] = {}
        self.cited: list[str] = []
        self.listed = False  # whether a {bibliography} directive placed the reference list

    def number(self) -> str:
        chapter = self.ctx.numbers.get(self.slug)
        return f"{chapter}.{self.exercise}" if chapter else str(self.exercise)

    def inline(self, text: str) -> str:
        return convert_inline(text, self.ctx, "" if self.standalone else self.slug, self.cited)

    def render(self, text: str) -> Converted:
        """Return the plain Markdown of one MyST cell."""
        lines, out, chunks, answers = text.split("\n"), [], [], []
        plain: list[str] = []  # consecutive prose lines: roles and links may span them

        def flush() -> None:
            if plain:
                out.append(self.inline("\n".join(plain)))
                plain.clear()

        by_start = {b.start: b for b in myst.blocks(text)}
        targets = dict(myst.targets(text))
        spoilers = {s.start: s for s in myst.spoilers(text)}
        closing = {s.end - 1 for s in spoilers.values()}
        i = 0
        while i < len(lines):
            line = lines[i]
            if i in spoilers or i in closing:  # the markers go; the answer stays, except for students
                flush()
                i = spoilers[i].end if (self.student and i in spoilers) else i + 1
                continue
            if i in targets:
                flush()
                out.append(f'<a id="{targets[i]}"></a>')
                i += 1
                continue
            if i in by_start:
                flush()
                block = by_start[i]
                if not block.is_directive:  # a plain code block: copied as it is
                    out += lines[block.start : block.end]
                    i = block.end
                    continue
                rendered, answer = self.directive(block.name, block.arg, block.options, block.body)
                if rendered is not None:
                    out.append(rendered)
                if answer:
                    chunks.append("\n".join(out).strip("\n"))
                    answers.append(answer)
                    out = []
                i = block.end
                continue
            plain.append(EQ_LABEL.sub(r"\1", line))
            i += 1
        flush()
        chunks.append("\n".join(out).strip("\n"))
        return Converted(chunks, answers)

    def body(self, text: str) -> str:
        inner = self.render(text)
        return "\n\n".join(c for c in inner.chunks if c)

    def directive(self, name: str, arg: str, options: dict, body: str) -> tuple[str | None, str]:
        """Return (markdown, exercise number to answer after it, or '')."""
        label = options.get("label")
        anchor = f'<a id="{label}"></a>\n' if label else ""
        if name == "exercise":
            self.exercise += 1
            number = self.number()
            if label:
                self.exercise_numbers[label] = number
            title = f" ({self.inline(arg)})" if arg else ""
            return f"{anchor}**Exercise {number}{title}.** {self.body(body)}", number
        if name == "solution":
            if self.student:
                return None, ""
            number = self.exercise_numbers.get(arg.strip(), "")
            inner = self.body(public_solution(body))
            return f"<details>\n<summary><b>Solution to Exercise {number}</b></summary>\n\n{inner}\n\n</details>", ""
        if name == "math":
            return f"$$\n{body.strip()}\n$$", ""
        if name in ("code-block", "code", "sourcecode"):
            caption = f"*{options['caption']}*\n\n" if options.get("caption") else ""
            return f"{caption}```{arg or 'python'}\n{body.strip(chr(10))}\n```", ""
        if name == "literalinclude":  # the mechanism's code, shown from lib itself (one source)
            path = (book.ROOT / "chapters" / arg).resolve()
            code = pyobject_source(path, options["pyobject"]) if "pyobject" in options else path.read_text()
            where = f"`{path.relative_to(book.ROOT).as_posix()}`"
            where += f", `{options['pyobject']}`" if "pyobject" in options else ""
            caption = options.get("caption") or f"From {where}"
            return f"*{self.inline(caption)}*\n\n```python\n{code.rstrip()}\n```", ""
        if name == "bibliography":  # the chapter's reference list: every work cited above it
            self.listed = True
            return self.references(), ""
        if name == "figure":
            caption = self.body(body)
            return f"![{options.get('alt', caption)}]({arg})\n\n*{caption}*", ""
        if name == "prf:proof":
            return f"{anchor}*Proof.* {self.body(body)} $\\blacksquare$", ""
        if name.startswith("prf:") and label in self.ctx.labels and self.ctx.labels[label][0] == self.slug:
            title = f" ({self.inline(arg)})" if arg else ""
            return f"{anchor}**{self.ctx.labels[label][1]}{title}.** {self.body(body)}", ""
        if name.startswith("prf:") or name in KINDS or name == "admonition":
            kind = KINDS.get(name, name.split(":")[-1].capitalize())
            if name == "admonition":
                kind, arg = arg or "Note", ""
            title = f" ({self.inline(arg)})" if arg else ""
            return f"{anchor}**{kind}{title}.** {self.body(body)}", ""
        return f"{anchor}{self.body(body)}", ""

    def references(self) -> str:
        """Return the chapter's reference list (every work it cites, in order of first citation)."""
        items = []
        for key in self.cited:
            ref = self.ctx.refs[key]
            link = f" <{ref['url']}>" if ref["url"] else ""
            items.append(f"- {ref['names']} ({ref['year']}). *{ref['title']}*.{venue(ref)}{link}")
        return "\n".join(items)


def how_to_cite(slug: str, ctx: Book, source: Path | None = None) -> str:
    """Return the chapter's "How to cite" section: the chapter of the book (CITATION.cff) and its paper (bib)."""
    cff = yaml.safe_load((book.ROOT / "CITATION.cff").read_text())
    authors = ", ".join(a.get("name") or f"{a.get('given-names', '')} {a.get('family-names', '')}".strip()
                        for a in cff["authors"])  # fmt: skip
    year = str(cff.get("date-released", ""))[:4]
    number = ctx.numbers.get(slug)
    where = f"chapter {number} of" if number else "in"
    lines = [
        "## How to cite",
        "",
        f'This chapter: {authors} ({year}). "{ctx.titles.get(slug, slug)}", {where} *{cff["title"]}*, '
        f"version {cff['version']}. {ctx.base_url}chapters/{slug}.html",
    ]
    text = (source or book.chapter_source(slug)).read_text()
    first = re.search(r"\{cite(?::[pt])?\}`([^`,]+)", text)
    if first and first.group(1).strip() in ctx.refs:
        ref = ctx.refs[first.group(1).strip()]
        link = f" {ref['url']}" if ref["url"] else ""
        lines += [
            "",
            f"The paper it reproduces: {ref['names']} ({ref['year']}). *{ref['title']}*.{venue(ref)}{link}",
        ]
    return "\n".join(lines)


def insert_before_references(cells: list, section: str, new_cell) -> None:
    """Put `section` right before the chapter's `## References` heading (or at the end when it has none)."""
    for cell in reversed(cells):
        if cell.cell_type == "markdown" and re.search(r"^## References\s*$", cell.source, re.M):
            head, _, tail = cell.source.partition("## References")
            cell.source = f"{head}{section}\n\n## References{tail}"
            return
    cells.append(new_cell(section))


ANSWER = (
    "**Your answer to Exercise {number}.** (Write your prediction or derivation here; code goes in the cell below.)"
)
ANSWER_CODE = "# Your code for Exercise {number} (if it asks for any)\n"


def convert(
    slug: str, ctx: Book | None = None, student: bool = False, source: Path | None = None
) -> nbformat.NotebookNode:
    """Return the plain-Jupyter notebook of a chapter (unexecuted), instructor or student edition."""
    ctx = ctx or context()
    nb = jupytext.read(source or book.chapter_source(slug))
    nb.metadata.pop("jupytext", None)
    conv = Converter(slug, ctx, student)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            if student and "solution" in cell.get("metadata", {}).get("tags", []):
                continue
            cell.outputs, cell.execution_count = [], None
            cells.append(cell)
            continue
        done = conv.render(SOLUTION_MARK.sub("", cell.source))
        for k, chunk in enumerate(done.chunks):
            if chunk.strip():
                cells.append(nbformat.v4.new_markdown_cell(chunk))
            if k < len(done.answers_after):
                answer = nbformat.v4.new_markdown_cell(ANSWER.format(number=done.answers_after[k]))
                answer.metadata["tags"] = ["answer"]
                code = nbformat.v4.new_code_cell(ANSWER_CODE.format(number=done.answers_after[k]))
                code.metadata["tags"] = ["answer"]
                cells += [answer, code]
    if conv.cited and not conv.listed:
        cells.append(nbformat.v4.new_markdown_cell("## References\n\n" + conv.references()))
    insert_before_references(cells, how_to_cite(slug, ctx, source), nbformat.v4.new_markdown_cell)
    nb.cells = cells
    return nb


def leftovers(nb: nbformat.NotebookNode) -> list[str]:
    """Return the MyST syntax left in a notebook's markdown cells (should be none)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        code = {j for b in myst.blocks(cell.source) if not b.is_directive for j in range(b.start, b.end)}
        prose = "\n".join(line for j, line in enumerate(cell.source.split("\n")) if j not in code)
        for pattern in MYST_LEFTOVERS:  # in the prose: code shown from lib may quote MyST in its comments
            if pattern in prose:
                found.append(f"cell {i}: {pattern!r}")
        if re.search(r"\]\([^)]*\.md(#[^)]*)?\)", cell.source):
            found.append(f"cell {i}: a link to a .md source")
        if re.search(r"^\([\w:-]+\)=\s*$", cell.source, re.M):
            found.append(f"cell {i}: a MyST target (label)=")
    return found


def write_notebook(nb: nbformat.NotebookNode, target: Path) -> bool:
    """Write `nb` to `target` keeping the old cell ids where cells line up; return True when it changed."""
    old = nbformat.read(target, as_version=4) if target.exists() else None
    if old is not None:
        for cell, before in zip(nb.cells, old.cells):
            if cell.cell_type == before.cell_type and before.get("id"):
                cell["id"] = before["id"]
    nbformat.validate(nb)
    text = nbformat.writes(nb) + "\n"
    if target.exists() and target.read_text() == text:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return True
