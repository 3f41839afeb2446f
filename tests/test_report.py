"""``fastconv study all``'s report: a self-contained HTML page that parses and embeds every figure, and report.md."""
import base64
import html.parser
import os

import pytest

from fastconv import studies
from fastconv.studies import report

# a valid 1x1 PNG: the report embeds files, it does not read them as images
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAAB"
                       "JRU5ErkJggg==")

TABLE = """# demo: a 2 x 2 study, 3 seeds

Some words with `code` and a <tag> & an ampersand.

| initializer | accuracy % | 95% CI |
|---|---|---|
| He | 91.0 ± 1.0 | [88.5, 93.5] |
| N(0, 0.01^2) | 9.8 ± 0.1 | [9.5, 10.1] |

**Verdict.**

- The claim holds: He 91.0% against 9.8%.
- A second point,
  continued on a second line.
"""


class _Page(html.parser.HTMLParser):
    """Collects what the tests check: the images (and their data), sections, tables, and unclosed tags."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.images, self.sections, self.tables, self.cells, self.stack, self.text = [], [], 0, [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "table":
            self.tables += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    page = _Page()
    page.feed(open(path, encoding="utf-8").read())
    page.close()
    assert page.stack == [], f"unclosed tags: {page.stack}"
    return page


def _fake_sections(out):
    sections = []
    for name, figures in (("alpha", ["a1.png", "a2.png"]), ("beta", ["b.png"])):
        os.makedirs(out / name)
        for fig in figures:
            (out / name / fig).write_bytes(PNG)
        sections.append({"name": name, "about": f"{name}: what it tests", "command": f"fastconv study {name}",
                         "dir": name, "figures": figures, "seconds": 1.5,
                         "markdown": TABLE.replace("demo", name)})
    return sections


def test_report_page_parses_and_embeds_every_figure(tmp_path):
    sections = _fake_sections(tmp_path)
    report.write_report(str(tmp_path), sections, command="fastconv study all --out X")
    page = _parse(tmp_path / "index.html")
    expected = {f"{s['dir']}/{fig}" for s in sections for fig in s["figures"]}
    assert {img["data-file"] for img in page.images} == expected
    for img in page.images:  # self-contained: the figure's bytes, not a link to them
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1]) == PNG
        assert img["alt"]
    assert page.sections == ["alpha", "beta"]
    text = " ".join(page.text)
    assert "fastconv study all --out X" in text and "fastconv study alpha" in text
    assert "The claim holds" in text and "continued on a second line" in text
    assert "a <tag> & an ampersand" in text  # escaped in the page, the same text once parsed
    assert page.tables >= 1 + 2 + 1  # contents, a table per study, versions
    for name in ("fastconv", "NumPy", "Python"):
        assert name in text
    md = open(tmp_path / "report.md", encoding="utf-8").read()
    assert all(f"]({path})" in md for path in expected)
    assert "| He | 91.0 ± 1.0 | [88.5, 93.5] |" in md


def test_markdown_to_html_tables_lists_and_escapes():
    out = report.markdown_to_html(TABLE, level=3)
    assert "<h3>demo: a 2 x 2 study, 3 seeds</h3>" in out
    assert "<th>initializer</th>" in out and "<td>[88.5, 93.5]</td>" in out and "---" not in out
    assert "<li>A second point, continued on a second line.</li>" in out
    assert "<strong>Verdict.</strong>" in out and "<code>code</code>" in out and "&lt;tag&gt; &amp;" in out


def test_study_all_runs_the_studies_and_writes_the_report(tmp_path):
    tiny = {"trainability": dict(depths=(2, 3), steps=5, width=8, train=320)}
    sections = studies.study_all(out=str(tmp_path), seeds=1, progress=False, only=["trainability"], options=tiny)
    assert [s["name"] for s in sections] == ["trainability"]
    assert all(s["markdown"].startswith("# ") for s in sections)
    page = _parse(tmp_path / "index.html")
    pngs = {f"trainability/{f}" for f in os.listdir(tmp_path / "trainability") if f.endswith(".png")}
    assert {img["data-file"] for img in page.images} == pngs
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in open(tmp_path / "index.html").read()
    else:
        assert pngs == {"trainability/trainability_loss.png", "trainability/trainability_accuracy.png"}
    assert os.path.exists(tmp_path / "report.md")
    with pytest.raises(ValueError, match="unknown study 'bogus'"):
        studies.study_all(out=str(tmp_path), only=["bogus"])
