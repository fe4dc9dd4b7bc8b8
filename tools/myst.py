"""The book's one reading of MyST: a chapter's blocks, directives, labels, sections, spoilers and exercises.

Every tool that reads a chapter's MyST reads it here, on a real parser: markdown-it-py with the plugins that
myst-parser installs (the parser Jupyter Book itself uses). The editions are renderers over this model:
`tools/notebooks.py` (the Colab notebooks, reader and student), `tools/student.py` (the student HTML),
`tools/assignments.py` (the otter notebooks), `tools/build.py` (the reader HTML); `tools/pairs.py`,
`tools/setup_cells.py` and the anatomy tests check documents through it.

Lines are counted from 0; a block's `end` is the index after its closing fence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

OPTION = re.compile(r"^:([\w-]+):\s*(.*)$")
SPOILER_OPEN = re.compile(r"^<!--\s*spoiler(?::\s*([\w:-]*))?\s*-->\s*$")
SPOILER_CLOSE = re.compile(r"^<!--\s*/spoiler\s*-->\s*$")
TARGET = re.compile(r"^\(([\w:-]+)\)=\s*$")
ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")


@cache
def _parser():
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    config = MdParserConfig(enable_extensions={"dollarmath", "amsmath", "colon_fence"})
    return create_md_parser(config, RendererHTML)


@dataclass(frozen=True)
class Block:
    """A fenced block: a directive (`{name} arg`) or a plain code block (info `python`, `text` or none)."""

    name: str  # the directive's name, or "" for a plain code block
    arg: str  # the directive's argument, or the plain block's language
    options: dict[str, str]
    body: str
    start: int
    end: int
    fence: str  # the opening fence, e.g. "````" or ":::"
    yaml_header: str = ""  # a `---`-delimited options block (code cells with figure metadata)
    body_start: int = 0  # the line of the body's first line

    @property
    def is_directive(self) -> bool:
        return bool(self.name)

    @property
    def label(self) -> str | None:
        return self.options.get("label")

    @property
    def body_end(self) -> int:
        """The line after the body's last line (the closing fence's)."""
        return self.end - 1

    def children(self) -> list[Block]:
        """Return the blocks inside this one's body (line numbers of the whole text)."""
        return blocks(self.body, offset=self.body_start)

    @property
    def is_python(self) -> bool:
        """True for code: a code cell, a ```python block or a {code-block} python."""
        return self.name == "code-cell" or (self.name in ("", "code-block") and self.arg == "python")


def _options(content: list[str]) -> tuple[dict[str, str], str, int]:
    """Return (options, YAML header, index of the first body line) of a directive's content lines."""
    if content and content[0].strip() == "---":
        end = next((i for i in range(1, len(content)) if content[i].strip() == "---"), None)
        if end is not None:
            return {}, "\n".join(content[1:end]), end + 1
    options, i = {}, 0
    while i < len(content) and OPTION.match(content[i].strip()):
        key, value = OPTION.match(content[i].strip()).groups()
        options[key] = value
        i += 1
    return options, "", i


def blocks(text: str, offset: int = 0) -> list[Block]:
    """Return the top-level fenced blocks of `text` (directives and plain code blocks), in order; `offset` is
    added to their line numbers (for blocks inside another block's body)."""
    lines = text.split("\n")
    out = []
    for token in _parser().parse(text):
        if token.type not in ("fence", "colon_fence") or token.map is None or token.level != 0:
            continue
        start, end = token.map
        info = token.info.strip()
        match = re.match(r"^\{([\w:-]+)\}\s*(.*)$", info)
        fence = re.match(r"^\s*(`{3,}|~{3,}|:{3,})", lines[start]).group(1)
        last = lines[end - 1].strip() if end - 1 > start else ""
        if not (last.startswith(fence) and set(last) == {fence[0]}):
            what = f"directive {{{match.group(1)}}}" if match else "code block"
            raise ValueError(f"unclosed {what} (fence {fence!r}) at line {start + offset + 1}")
        content = lines[start + 1 : end - 1]
        options, header, first = _options(content) if match else ({}, "", 0)
        if options or header:
            while first < len(content) and not content[first].strip():
                first += 1  # the blank line between options and body
        body = "\n".join(content[first:])
        name, arg = (match.group(1), match.group(2).strip()) if match else ("", info)
        out.append(
            Block(name, arg, options, body, start + offset, end + offset, fence, header, start + 1 + first + offset)
        )
    return out


def directives(text: str, name: str | None = None) -> list[Block]:
    """Return the top-level directives of `text` (those named `name` only, when given)."""
    return [b for b in blocks(text) if b.is_directive and (name is None or b.name == name)]


def all_blocks(text: str) -> list[Block]:
    """Return every fenced block of `text` at any depth (a directive before the blocks in its body), in order."""
    out: list[Block] = []

    def walk(found: list[Block]) -> None:
        for b in found:
            out.append(b)
            if b.is_directive and not b.is_python:  # code holds no blocks
                walk(b.children())

    walk(blocks(text))
    return out


def code_cells(text: str) -> list[Block]:
    """Return the `{code-cell}` directives of a MyST notebook, in order."""
    return directives(text, "code-cell")


def code_blocks(text: str) -> list[Block]:
    """Return every block of Python code in `text`: code cells, and ```python or {code-block} python blocks at any
    depth (in exercises, solutions and autograder tests)."""
    return [b for b in all_blocks(text) if b.is_python]


def replace_lines(text: str, spans: dict[tuple[int, int], str]) -> str:
    """Return `text` with the line spans [start, end) replaced by new text (spans must not overlap)."""
    lines = text.split("\n")
    for (start, end), new in sorted(spans.items(), reverse=True):
        lines[start:end] = new.split("\n") if new != "" else []
    return "\n".join(lines)


def replace_blocks(text: str, new: dict[int, str | None]) -> str:
    """Return `text` with the blocks starting at the given lines replaced by new text (None: removed)."""
    lines = text.split("\n")
    by_start = {b.start: b for b in blocks(text)}
    out, i = [], 0
    while i < len(lines):
        if i in by_start and by_start[i].start in new:
            block = by_start[i]
            if new[i] is not None:
                out += new[i].split("\n")
            i = block.end
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def render_block(block: Block, body: str) -> str:
    """Return the MyST text of `block` with a new body (its fence, argument and options kept)."""
    head = block.fence + (f"{{{block.name}}}" + (f" {block.arg}" if block.arg else "") if block.name else block.arg)
    options = [f":{k}: {v}" for k, v in block.options.items()]
    spacer = [""] if options and body else []
    return "\n".join([head, *options, *spacer, *([body] if body else []), block.fence])


@dataclass(frozen=True)
class Spoiler:
    """Lines [start, end) wrapped in `<!-- spoiler: label -->` ... `<!-- /spoiler -->` (they answer an exercise)."""

    label: str
    start: int
    end: int


def spoilers(text: str) -> list[Spoiler]:
    """Return the spoiler blocks of `text` (outside fenced blocks)."""
    inside = {i for b in blocks(text) for i in range(b.start, b.end)}
    out, opened = [], None
    for i, line in enumerate(text.split("\n")):
        if i in inside:
            continue
        if SPOILER_OPEN.match(line.strip()):
            opened = (SPOILER_OPEN.match(line.strip()).group(1) or "", i)
        elif SPOILER_CLOSE.match(line.strip()) and opened:
            out.append(Spoiler(opened[0], opened[1], i + 1))
            opened = None
    if opened:
        raise ValueError(f"unclosed spoiler block at line {opened[1] + 1}")
    return out


def without(text: str, drop_solutions: bool = True, drop_spoilers: bool = True) -> str:
    """Return `text` without its `{solution}` directives and its spoiler blocks (the student edition)."""
    if drop_solutions:
        text = replace_blocks(text, {b.start: None for b in directives(text, "solution")})
    if drop_spoilers:
        lines = text.split("\n")
        gone = {i for s in spoilers(text) for i in range(s.start, s.end)}
        text = "\n".join(line for i, line in enumerate(lines) if i not in gone)
    return re.sub(r"\n{3,}", "\n\n", text)


def sections(text: str, level: int = 2) -> dict[str, str]:
    """Return {heading: text under it} for the headings of `level` (up to the next heading of that level)."""
    lines = text.split("\n")
    heads = [
        (t.map[0], lines[t.map[0]].lstrip("#").strip())
        for t in _parser().parse(text)
        if t.type == "heading_open" and t.tag == f"h{level}" and t.map and t.level == 0
    ]
    out = {}
    for k, (start, title) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        out[title] = "\n".join(lines[start + 1 : end])
    return out


def targets(text: str) -> list[tuple[int, str]]:
    """Return (line, label) of the `(label)=` targets of `text`."""
    return [
        (t.map[0], t.content.strip())
        for t in _parser().parse(text)
        if t.type == "myst_target" and t.map is not None and t.level == 0
    ]


@dataclass
class Exercise:
    """An `{exercise}` with its `{solution}` (None when it has none)."""

    directive: Block
    number: int  # its place among the chapter's exercises, from 1
    solution: Block | None = field(default=None)

    @property
    def label(self) -> str | None:
        return self.directive.label


def exercises(text: str) -> list[Exercise]:
    """Return the exercises of `text`, each with the solution that names its label."""
    found: dict[str, Exercise] = {}
    out = []
    for block in directives(text):
        if block.name == "exercise":
            ex = Exercise(block, len(out) + 1)
            out.append(ex)
            if block.label:
                found[block.label] = ex
        elif block.name == "solution" and block.arg in found:
            found[block.arg].solution = block
    return out
