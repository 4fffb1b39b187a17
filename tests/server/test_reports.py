"""Reports (.Rmd, .qmd): the header read at request time (declared params, the format and its
file), the render's argv, and R Markdown jobs rendered for real on the local backend (R,
rmarkdown and pandoc are installed by scripts/setup.sh for the tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.errors import InvalidRequest
from awsjobs_lab.reports import ReportError, describe_text, output_extension, parse_header
from awsjobs_lab.requests import LaunchDefaults, parse_launch_request
from awsjobs_lab.runners import RENDER_RMD, build_command
from tests.server.helpers import assert_error
from tests.server.test_api import finished

PY = "/opt/python"

RMD = """---
title: "Squares"
params:
  n: 3
  who: "nobody"
output: html_document
---

The square of `r params$n` is `r params$n^2`, for `r params$who`.
"""

# R Markdown evaluates `!r` and `!expr` values in R; the header's reader keeps their text.
RMD_R_EXPRESSIONS = """---
title: "Since"
output: html_document
params:
  start: !r as.Date("2024-05-01")
  regions: !expr c("north", "south")
  n: 3
---

From `r format(params$start)`, `r length(params$regions)` regions, n = `r params$n`.
"""

QMD_KNITR = """---
title: Knitr
format:
  pdf:
    toc: true
  html: default
params:
  alpha: 0.1
---
```{r}
params$alpha
```
"""

QMD_JUPYTER = """---
title: Jupyter
jupyter: python3
---

```{python}
#| tags: [parameters]
alpha = 0.1
ratio: float = 2.0
x, y = 1, 2
```

```{python}
print(alpha * ratio)
```
"""


def parse(root: Path, name: str, text: str, **body: Any) -> Any:
    (root / name).write_text(text)
    return parse_launch_request(
        {"path": name, **body}, root_dir=root, backends=["local"], defaults=LaunchDefaults()
    )


# -- the header ------------------------------------------------------------------------------


def test_rmd_header() -> None:
    info = describe_text(RMD, ".Rmd")
    assert (info.declared_params, info.output_format, info.extension) == (
        ("n", "who"),
        "html_document",
        "html",
    )


def test_qmd_header_first_format_and_params() -> None:
    info = describe_text(QMD_KNITR, ".qmd")
    assert (info.declared_params, info.output_format, info.extension) == (("alpha",), "pdf", "pdf")


def test_qmd_jupyter_parameters_cell() -> None:
    # Top-level names of the cell tagged `parameters` (a tuple target is not a parameter).
    info = describe_text(QMD_JUPYTER, ".qmd")
    assert info.declared_params == ("alpha", "ratio")
    assert (info.output_format, info.extension) == ("html", "html")


def test_an_untagged_cell_declares_nothing() -> None:
    text = "```{python}\nalpha = 1\n```\n"
    assert describe_text(text, ".qmd").declared_params == ()


def test_no_header() -> None:
    assert parse_header("# Just markdown\n---\n") == {}
    info = describe_text("Hello\n", ".Rmd")
    assert (info.declared_params, info.output_format) == ((), "html_document")


@pytest.mark.parametrize(
    "text",
    [
        "---\ntitle: [unclosed\n---\n",  # not YAML
        "---\n- a list\n---\n",  # not a mapping
        "---\ntitle: x\n",  # never closed
        "---\nparams: [a, b]\n---\n",  # params not a mapping
    ],
)
def test_bad_headers(text: str) -> None:
    with pytest.raises(ReportError):
        describe_text(text, ".Rmd")


def test_header_is_plain_data_only() -> None:
    # The safe loader: a Python object tag is refused, never built.
    with pytest.raises(ReportError):
        parse_header("---\nx: !!python/object/apply:os.system ['true']\n---\n")


def test_r_expression_params_are_declared() -> None:
    info = describe_text(RMD_R_EXPRESSIONS, ".Rmd")
    assert info.declared_params == ("n", "regions", "start")
    header = parse_header(RMD_R_EXPRESSIONS)
    assert header["params"]["start"] == 'as.Date("2024-05-01")'


def test_r_expression_tag_takes_a_scalar_only() -> None:
    with pytest.raises(ReportError, match="!r takes an R expression"):
        parse_header("---\nparams:\n  x: !r [1, 2]\n---\n")


@pytest.mark.parametrize(
    ("name", "extension"),
    [
        ("html_document", "html"),
        ("html_notebook", "nb.html"),
        ("pdf_document", "pdf"),
        ("bookdown::pdf_book", "pdf"),
        ("bookdown::html_document2", "html"),
        ("word_document", "docx"),
        ("powerpoint_presentation", "pptx"),
        ("beamer_presentation", "pdf"),
        ("md_document", "md"),
        ("github_document", "md"),
        ("ioslides_presentation", "html"),
        ("html", "html"),
        ("revealjs", "html"),
        ("pdf", "pdf"),
        ("typst", "pdf"),
        ("docx", "docx"),
        ("gfm", "md"),
        ("acme-pdf", "pdf"),
        ("ipynb", "ipynb"),
    ],
)
def test_output_extension(name: str, extension: str) -> None:
    assert output_extension(name) == extension


# -- the request -----------------------------------------------------------------------------


def test_rmd_request(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    job = parse(tmp_path, "r/sq.Rmd", RMD, parameters={"n": 7})
    assert job.parameters == {"n": 7}
    assert job.output_path == f"r/sq.{job.id}.html"
    assert job.output_format == "html_document"


def test_qmd_request_renders_its_first_format(tmp_path: Path) -> None:
    job = parse(tmp_path, "k.qmd", QMD_KNITR, parameters={"alpha": [1, 2]})
    assert (job.output_path, job.output_format) == (f"k.{job.id}.pdf", "pdf")


def test_undeclared_parameter_lists_the_declared(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"'m' is not declared by sq.Rmd; declared: n, who"):
        parse(tmp_path, "sq.Rmd", RMD, parameters={"n": 1, "m": 2})


def test_a_report_without_params_takes_none(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"plain\.Rmd declares no params"):
        parse(tmp_path, "plain.Rmd", "# Plain\n", parameters={"n": 1})
    assert parse(tmp_path, "plain.Rmd", "# Plain\n").parameters == {}


def test_jupyter_qmd_parameters_checked_against_the_cell(tmp_path: Path) -> None:
    assert parse(tmp_path, "j.qmd", QMD_JUPYTER, parameters={"ratio": 3}).parameters == {"ratio": 3}
    with pytest.raises(InvalidRequest, match="declared: alpha, ratio"):
        parse(tmp_path, "j.qmd", QMD_JUPYTER, parameters={"x": 3})


def test_unreadable_header_is_a_400(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"path: 'bad\.Rmd' cannot be read as a report"):
        parse(tmp_path, "bad.Rmd", "---\ntitle: [\n---\n")


# -- the render's argv -----------------------------------------------------------------------


def test_rmd_argv(tmp_path: Path) -> None:
    job = parse(tmp_path, "-sq.Rmd", RMD, parameters={"who": "a b", "n": 2})
    argv = build_command(job, PY)
    assert argv[:5] == ["Rscript", "-e", RENDER_RMD, "./-sq.Rmd", f"./-sq.{job.id}.html"]
    assert json.loads(argv[5]) == {"n": 2, "who": "a b"} and len(argv) == 6
    assert build_command(parse(tmp_path, "sq.Rmd", RMD), PY)[5:] == []


def test_qmd_argv(tmp_path: Path) -> None:
    params = {"alpha": {"k": [1, None, "x:y"]}}
    job = parse(tmp_path, "k.qmd", QMD_KNITR, parameters=params)
    assert build_command(job, PY) == [
        "quarto",
        "render",
        "k.qmd",
        "--output",
        f"k.{job.id}.pdf",
        "--to",
        "pdf",
        "-P",
        'alpha:{"k": [1, null, "x:y"]}',
    ]


# -- rendered for real -----------------------------------------------------------------------


async def test_rmd_with_params_renders_them(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "reports").mkdir()
    (jp_root_dir / "reports" / "sq.Rmd").write_text(RMD)
    body = {"path": "reports/sq.Rmd", "parameters": {"n": 12, "who": "Ada & Bob"}}
    code, job = await api("POST", "jobs", body=body)
    assert code == 201, job
    assert job["output_path"] == f"reports/sq.{job['id']}.html"
    done = await finished(api, job["id"])
    log = (jp_root_dir / done["log_path"]).read_text()
    assert done["state"] == "succeeded", log
    html = (jp_root_dir / done["output_path"]).read_text()
    assert "The square of 12 is 144, for Ada &amp; Bob." in html, html[-2000:]
    # Nothing of the render is left beside the report but its output and the log.
    assert sorted(p.name for p in (jp_root_dir / "reports").iterdir()) == sorted(
        ["sq.Rmd", Path(done["output_path"]).name, Path(done["log_path"]).name]
    )


async def test_rmd_without_params_uses_its_defaults(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "sq.Rmd").write_text(RMD)
    code, job = await api("POST", "jobs", body={"path": "sq.Rmd"})
    assert code == 201, job
    done = await finished(api, job["id"])
    assert done["state"] == "succeeded", (jp_root_dir / done["log_path"]).read_text()
    assert "The square of 3 is 9, for nobody." in (jp_root_dir / done["output_path"]).read_text()


async def test_rmd_with_r_expression_params_renders(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "since.Rmd").write_text(RMD_R_EXPRESSIONS)
    code, job = await api("POST", "jobs", body={"path": "since.Rmd", "parameters": {"n": 7}})
    assert code == 201, job
    done = await finished(api, job["id"])
    assert done["state"] == "succeeded", (jp_root_dir / done["log_path"]).read_text()
    html = (jp_root_dir / done["output_path"]).read_text()
    assert "From 2024-05-01, 2 regions, n = 7." in html, html[-2000:]


async def test_failing_rmd_fails(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "bad.Rmd").write_text("```{r}\nstop('broken on purpose')\n```\n")
    code, job = await api("POST", "jobs", body={"path": "bad.Rmd"})
    assert code == 201, job
    done = await finished(api, job["id"])
    assert done["state"] == "failed"
    assert "broken on purpose" in (jp_root_dir / done["log_path"]).read_text()


async def test_undeclared_parameter_over_http(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "sq.Rmd").write_text(RMD)
    code, reply = await api("POST", "jobs", body={"path": "sq.Rmd", "parameters": {"k": 1}})
    assert_error(code, reply, 400, "parameters: 'k' is not declared by sq.Rmd", "declared: n, who")
