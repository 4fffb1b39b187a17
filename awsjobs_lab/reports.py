"""What a report (`.Rmd`, `.qmd`) says about itself in its header: the parameters it declares
and the format it renders to (so the job knows the name of the file it will produce).

The YAML header is the block between a first line `---` and the next line `---` or `...`; it
is read with PyYAML's safe loader (plain data only, never an object; an R expression tagged
`!r` or `!expr` is kept as its text). What counts as declared:

- the keys of the header's `params` mapping (R Markdown and Quarto's knitr engine);
- for Quarto with a Python (Jupyter) engine, also the names assigned at the top level of a
  code cell tagged `parameters` (`#| tags: [parameters]`), as papermill reads that cell.

A document that declares none takes no parameters. The format is the header's first one (R
Markdown's `output`, Quarto's `format`; each default to HTML), the one a render without a
format argument produces first; its file extension comes from the format's name.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .safeopen import read_small_text

# A header past this many bytes is not looked for (no report has one this long).
MAX_HEADER_BYTES = 1024 * 1024
# Where the parameters cell of a Quarto document may be found.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024

RMD_DEFAULT_FORMAT = "html_document"
QMD_DEFAULT_FORMAT = "html"


class ReportError(ValueError):
    """The document's header cannot be read (not UTF-8, not YAML, not a mapping)."""


@dataclass(frozen=True)
class ReportInfo:
    declared_params: tuple[str, ...]  # sorted
    output_format: str  # the format's name as the header spells it
    extension: str  # of the rendered file, without the dot: "html", "pdf", "nb.html"


def _header_text(text: str) -> str | None:
    lines = text.splitlines()
    if not lines or lines[0].rstrip() != "---":
        return None
    for index, line in enumerate(lines[1:], start=1):
        if line.rstrip() in ("---", "..."):
            return "\n".join(lines[1:index])
    raise ReportError("its YAML header (from the first line ---) is never closed")


class _HeaderLoader(yaml.SafeLoader):
    """The safe loader, plus the R-expression tags R Markdown and Quarto evaluate in a header
    (`start: !r Sys.Date()`, `!expr`): kept as their text, since only the header's names and
    format are read here."""


def _r_expression(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.tag} takes an R expression", node.start_mark
        )
    return str(loader.construct_scalar(node))


for _tag in ("!r", "!expr"):
    _HeaderLoader.add_constructor(_tag, _r_expression)


def parse_header(text: str) -> dict[str, Any]:
    """The YAML header of a document's text as a mapping ({} when it has none)."""
    header = _header_text(text)
    if header is None:
        return {}
    try:
        data = yaml.load(header, Loader=_HeaderLoader)
    except yaml.YAMLError as err:
        raise ReportError(f"its YAML header is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ReportError("its YAML header is not a mapping of keys and values")
    return data


def _first_format(value: Any, default: str) -> str:
    """The first format of an `output:`/`format:` value: a name, or the first key of a mapping
    (`html_document: {toc: true}`), or the first item of a list."""
    if isinstance(value, dict):
        value = next(iter(value), None)
    elif isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value.strip() else default


# Format name (the part after `pkg::` or a Quarto extension's `name-`) → the file it writes.
_EXTENSIONS: tuple[tuple[str, str], ...] = (
    ("html_notebook", "nb.html"),
    ("beamer", "pdf"),
    ("pdf", "pdf"),
    ("typst", "pdf"),
    ("tufte_handout", "pdf"),
    ("tufte_book", "pdf"),
    ("word", "docx"),
    ("docx", "docx"),
    ("odt", "odt"),
    ("rtf", "rtf"),
    ("powerpoint", "pptx"),
    ("pptx", "pptx"),
    ("epub", "epub"),
    ("ipynb", "ipynb"),
    ("latex", "tex"),
    ("md", "md"),
    ("github_document", "md"),
    ("gfm", "md"),
    ("commonmark", "md"),
    ("markdown", "md"),
)


def output_extension(format_name: str) -> str:
    """The extension of what `format_name` renders to; HTML for every other format (html,
    revealjs, dashboard, ioslides_presentation, bookdown's html_document2, ...)."""
    base = format_name.split("::")[-1].split("-")[-1].split("+")[0].lower()
    words = base.split("_")
    for key, extension in _EXTENSIONS:
        if base == key or key in words:
            return extension
    return "html"


def _header_params(header: dict[str, Any]) -> set[str]:
    params = header.get("params")
    if params is None:
        return set()
    if not isinstance(params, dict):
        raise ReportError("its header's params must be a mapping of name: value")
    return {str(name) for name in params}


_CHUNK = re.compile(r"^```+\s*\{(?P<engine>[A-Za-z0-9_]+)[^}]*\}\s*$")
_TAGS = re.compile(r"^#\|\s*tags\s*:\s*(?P<value>.*)$")


def _chunks(text: str) -> list[tuple[str, list[str]]]:
    """The executable code chunks of a Quarto document: (engine, lines)."""
    chunks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if current is None:
            match = _CHUNK.match(line.strip())
            if match:
                current = []
                chunks.append((match["engine"].lower(), current))
        elif line.strip().startswith("```"):
            current = None
        else:
            current.append(line)
    return chunks


def _is_parameters_cell(lines: list[str]) -> bool:
    for line in lines:
        match = _TAGS.match(line.strip())
        if match:
            try:
                tags = yaml.safe_load(match["value"])
            except yaml.YAMLError:
                return False
            return isinstance(tags, list) and "parameters" in tags
    return False


def _assigned_names(source: str) -> set[str]:
    """The names a Python cell assigns at its top level (`alpha = 0.1`, `n: int = 3`)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def jupyter_cell_params(text: str) -> set[str]:
    """The names declared by the Python cells tagged `parameters` of a Quarto document."""
    names: set[str] = set()
    for engine, lines in _chunks(text):
        if engine == "python" and _is_parameters_cell(lines):
            names |= _assigned_names("\n".join(lines))
    return names


def describe_text(text: str, suffix: str) -> ReportInfo:
    """What a report's text declares; `suffix` is `.rmd` or `.qmd` (any case)."""
    header = parse_header(text)
    declared = _header_params(header)
    if suffix.lower() == ".qmd":
        declared |= jupyter_cell_params(text)
        output_format = _first_format(header.get("format"), QMD_DEFAULT_FORMAT)
    else:
        output_format = _first_format(header.get("output"), RMD_DEFAULT_FORMAT)
    return ReportInfo(tuple(sorted(declared)), output_format, output_extension(output_format))


def describe_report(path: Path) -> ReportInfo:
    """Read the report at `path` (a regular file, checked already) and describe it. Raises
    `ReportError`, or OSError when it cannot be read. Blocking: call it off the loop."""
    limit = MAX_DOCUMENT_BYTES if path.suffix.lower() == ".qmd" else MAX_HEADER_BYTES
    return describe_text(read_small_text(path, limit), path.suffix)


def rendered_name(source_name: str, job_id: str, extension: str) -> str:
    """`<stem>.<job id>.<ext>`: the file a report job renders to, beside its source (as a
    notebook job's executed copy), so jobs of one report never write over each other."""
    stem = Path(source_name).stem
    return f"{stem}.{job_id}.{extension}"
