"""``fastconv study all``: every study with its defaults, and one report of them all.

:func:`study_all` runs the studies into ``out/NAME/`` and :func:`write_report` writes ``out/index.html``
(one self-contained page: each study's table, figures embedded as base64 PNG, verdict, the command that
produced it, its run time, and the versions of everything involved) and ``out/report.md`` (the same, the
figures linked by relative path).
"""
import base64
import datetime
import html
import importlib.metadata
import os
import platform
import re
import sys
import time

from .plots import NO_MATPLOTLIB

__all__ = ["STUDIES", "study_all", "write_report", "versions"]

# CLI name: (function name in fastconv.studies, the figures it writes, what it tests)
STUDIES = {
    "depth": ("depth", ("depth.png",),
              "seeds 003/004: activations and gradients of a deep plain MLP at initialization"),
    "trainability": ("trainability", ("trainability_loss.png", "trainability_accuracy.png"),
                     "seed 003 and He et al. 2015: which plain MLPs still train as they get deeper"),
    "batchnorm": ("batchnorm", ("batchnorm.png",),
                  "seeds 004/002: does batch normalization make the initializer matter less"),
    "selu": ("selu", ("selu.png",), "seed 000: is LeCun normal \"meant for SELU\""),
    "moons": ("moons", ("moons_loss.png", "moons_boundaries.png"),
              "seed 001: zeros, large random and He initialization on make_moons"),
    "mnist-init": ("mnist_init", ("mnist_init.png",),
                   "seed 000: which initializer trains its two-convolution MNIST network best"),
}


def versions():
    """``{package: version}`` of Python, the platform and every package a study's numbers depend on."""
    import numpy

    from .. import __version__, get_num_threads

    found = {"fastconv": __version__, "Python": platform.python_version(), "NumPy": numpy.__version__}
    for name, dist in (("matplotlib", "matplotlib"), ("joblib", "joblib"), ("threadpoolctl", "threadpoolctl"),
                       ("Dask distributed", "distributed")):
        try:  # the installed distribution's version, without importing it (Dask takes seconds to import)
            found[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["platform"] = platform.platform()
    found["CPUs"] = str(os.cpu_count())
    found["fastconv threads"] = str(get_num_threads())
    return found


def study_all(out="study-all", seeds=None, jobs=1, scheduler=None, progress=True, only=None, options=None):
    """Run every study of :data:`STUDIES` (or those named in ``only``) into ``out/NAME/`` and write the report.

    seeds : runs per setting for every study (default: each study's own default).
    options : ``{name: {argument: value}}``, extra arguments for a study (tests use it for tiny runs).
    Returns the report's sections.
    """
    from .. import studies

    names = list(STUDIES) if only is None else list(only)
    for name in names:
        if name not in STUDIES:
            raise ValueError(f"unknown study {name!r}; valid: {', '.join(STUDIES)}")
    sections = []
    for name in names:
        function, figures, about = STUDIES[name]
        kwargs = dict(out=os.path.join(out, name), jobs=jobs, scheduler=scheduler, progress=progress)
        if seeds is not None:
            kwargs["seeds"] = seeds
        extra = dict((options or {}).get(name, {}))
        kwargs.update(extra)
        command = f"fastconv study {name} --out {kwargs['out']}" + (f" --seeds {seeds}" if seeds else "") + (
            f" --jobs {jobs}" if jobs != 1 else "") + (" --scheduler ADDRESS" if scheduler is not None else "")
        if extra:
            command += "  # with " + ", ".join(f"{k}={v!r}" for k, v in extra.items())
        t0 = time.perf_counter()
        section = {"name": name, "about": about, "command": command, "dir": name, "figures": []}
        getattr(studies, function)(**kwargs)
        section["seconds"] = time.perf_counter() - t0
        with open(os.path.join(kwargs["out"], f"{function}.md"), encoding="utf-8") as f:
            section["markdown"] = f.read()
        section["figures"] = [fig for fig in figures if os.path.exists(os.path.join(kwargs["out"], fig))]
        if len(section["figures"]) < len(figures):
            section["missing_figures"] = [fig for fig in figures if fig not in section["figures"]]
        sections.append(section)
    write_report(out, sections, command=_all_command(out, seeds, jobs, scheduler))
    return sections


def _all_command(out, seeds, jobs, scheduler):
    return (f"fastconv study all --out {out}" + (f" --seeds {seeds}" if seeds else "")
            + (f" --jobs {jobs}" if jobs != 1 else "") + (" --scheduler ADDRESS" if scheduler is not None else ""))


def write_report(out, sections, command="fastconv study all"):
    """Write ``out/index.html`` and ``out/report.md`` for ``sections`` (as :func:`study_all` makes them)."""
    os.makedirs(out, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    found = versions()
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as f:
        f.write(_html(out, sections, command, when, found))
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(_markdown(sections, command, when, found))


def _title(section):
    first = section.get("markdown", "").splitlines()[:1]
    return first[0].lstrip("# ").strip() if first and first[0].startswith("#") else section["name"]


def _body_markdown(section):
    """The study's markdown without its title line (the report gives each study its own heading)."""
    lines = section["markdown"].splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip() + "\n"


def _figure_note(section):
    if section.get("missing_figures"):
        return ("Figures not written (" + ", ".join(section["missing_figures"]) + "): "
                + NO_MATPLOTLIB.format(name=section["name"]).split(": ", 1)[1])
    return None


def _markdown(sections, command, when, found):
    lines = ["# fastconv studies: the seeds' claims, measured", "",
             f"Produced by `{command}` on {when}.", "", "| study | tests | run time |", "|---|---|---|"]
    for s in sections:
        status = f"{s['seconds']:.0f} s"
        lines.append(f"| [{s['name']}](#{s['name']}) | {s['about']} | {status} |")
    for s in sections:
        lines += ["", f"## {s['name']}", "", f"*{s['about']}*", "", f"Command: `{s['command']}`", ""]
        lines += [f"### {_title(s)}", "", _body_markdown(s).rstrip(), ""]
        lines += [f"![{s['name']}: {fig}]({s['dir']}/{fig})" for fig in s["figures"]]
        if _figure_note(s):
            lines.append(_figure_note(s))
        lines += ["", f"Run time: {s['seconds']:.1f} s."]
    lines += ["", "## Versions", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in found.items()]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px; margin: 2em auto;
       padding: 0 1em; line-height: 1.5; color: #222; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .95em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; } code { background: #f3f3f3; padding: 0 .25em; }
.about { color: #555; font-style: italic; } .skipped { color: #a33; } .meta { color: #666; font-size: .9em; }
"""


def _inline(text):
    """Markdown inline markup (``code``, **bold**, *italic*) of one escaped line, as HTML."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![*\w])\*([^*]+)\*(?![*\w])", r"<em>\1</em>", text)


def markdown_to_html(text, level=3):
    """The markdown the studies write (headings, paragraphs, "- " lists, pipe tables) as HTML; a heading
    ``#`` becomes ``<h{level}>``."""
    out, para, lst, table = [], [], [], []

    def flush():
        if para:
            out.append("<p>" + " ".join(_inline(p) for p in para) + "</p>")
            para.clear()
        if lst:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in lst) + "</ul>")
            lst.clear()
        if table:
            rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table]
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
                       + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            table.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            flush()
        elif stripped.startswith("|"):
            if para or lst:
                flush()
            table.append(stripped)
        elif stripped.startswith("#"):
            flush()
            depth = len(stripped) - len(stripped.lstrip("#"))
            out.append(f"<h{min(level + depth - 1, 6)}>{_inline(stripped.lstrip('#').strip())}"
                       f"</h{min(level + depth - 1, 6)}>")
        elif stripped.startswith("- "):
            if para or table:
                flush()
            lst.append(stripped[2:])
        elif lst:
            lst[-1] += " " + stripped  # a list item's continuation line
        else:
            if table:
                flush()
            para.append(stripped)
    flush()
    return "\n".join(out)


def _html(out, sections, command, when, found):
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>fastconv studies: the seeds' claims, measured</title>", f"<style>{_CSS}</style>", "</head>",
             "<body>", "<h1>fastconv studies: the seeds' claims, measured</h1>",
             f'<p class="meta">Produced by <code>{esc(command)}</code> on {esc(when)}. Each study reruns an '
             "experiment of the five texts on weight initialization this project started from (the "
             "&ldquo;seeds&rdquo;) with many seeds and 95% intervals; its verdict is computed from the numbers "
             "below.</p>", "<table><thead><tr><th>study</th><th>tests</th><th>run time</th></tr></thead><tbody>"]
    for s in sections:
        status = f"{s['seconds']:.0f} s"
        parts.append(f'<tr><td><a href="#{esc(s["name"])}">{esc(s["name"])}</a></td><td>{esc(s["about"])}</td>'
                     f"<td>{status}</td></tr>")
    parts.append("</tbody></table>")
    for s in sections:
        parts += [f'<section id="{esc(s["name"])}">', f"<h2>{esc(s['name'])}</h2>",
                  f'<p class="about">{esc(s["about"])}</p>', f"<p>Command: <code>{esc(s['command'])}</code></p>"]
        parts.append(f"<h3>{esc(_title(s))}</h3>")
        body = _body_markdown(s)
        split = body.find("**Verdict.**")
        table_part, verdict_part = (body, "") if split < 0 else (body[:split], body[split:])
        parts.append(markdown_to_html(table_part, level=4))
        for fig in s["figures"]:
            with open(os.path.join(out, s["dir"], fig), "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            path = f"{s['dir']}/{fig}"
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(s["name"])}: {esc(fig)}" '
                         f'data-file="{esc(path)}"><figcaption>{esc(path)}</figcaption></figure>')
        if _figure_note(s):
            parts.append(f'<p class="skipped">{esc(_figure_note(s))}</p>')
        if verdict_part:
            parts.append(markdown_to_html(verdict_part, level=4))
        parts += [f'<p class="meta">Run time: {s["seconds"]:.1f} s.</p>', "</section>"]
    parts += ["<h2>Versions</h2>", "<table><tbody>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in found.items()]
    parts += ["</tbody></table>", f'<p class="meta">Python {esc(sys.version.split()[0])}, '
              f"written by fastconv.studies.report.</p>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"
