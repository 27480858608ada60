"""Render a Report as one self-contained HTML page that looks like it will on GitHub.

The page is the report's Markdown (no size limit) rendered by GitHub's own engine,
cmark-gfm, then sanitized with nh3 against GitHub's allowlist; only after that
are the relative ``assets/…`` image links swapped for ``data:`` URIs, so the
sanitizer never has to allow ``data:`` URLs from notebook content. A
Content-Security-Policy lets the page load nothing but its own style and images.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import re

from cml_nb.report.markdown import DEFAULT_COLLAPSE_LINES, relative_url, to_markdown
from cml_nb.report.model import Report
from cml_nb.report.sanitize import sanitize_html

_STYLE = """
body{margin:0;background:#f6f8fa;color:#1f2328;font:14px/1.5 -apple-system,BlinkMacSystemFont,
"Segoe UI","Noto Sans",Helvetica,Arial,sans-serif}
main{max-width:1012px;margin:24px auto;padding:24px 32px;background:#fff;border:1px solid #d0d7de;
border-radius:6px}
h1,h2,h3{border-bottom:1px solid #d8dee4;padding-bottom:.3em}
table{border-collapse:collapse;display:block;overflow:auto;max-width:100%;margin:0 0 16px}
th,td{border:1px solid #d0d7de;padding:4px 12px;text-align:left}
tr:nth-child(2n){background:#f6f8fa}
pre{background:#f6f8fa;padding:12px 16px;border-radius:6px;overflow:auto;font-size:12px;
line-height:1.45}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre[lang=pytb]{background:#fff1f0}
pre[lang=python],pre[lang=r],pre[lang=julia]{border-left:3px solid #0969da;background:#f3f7fc}
pre[lang=math]{text-align:center;background:#fff;font-size:14px}
blockquote{margin:0 0 16px;padding:0 1em;color:#59636e;border-left:.25em solid #d0d7de}
blockquote pre{background:#fff8e6}
img{max-width:100%;background:#fff}
details{margin:0 0 16px}summary{cursor:pointer;color:#0969da}
hr{border:0;border-top:1px solid #d0d7de;margin:24px 0}
"""


def markdown_to_html(markdown: str) -> str:
    """GitHub-flavoured Markdown to sanitized HTML, as GitHub would show it."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    rendered = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    return sanitize_html(rendered)


_ASSET_SRC = re.compile(r'src="assets/([0-9a-f]{64}\.[a-z]+)"')


def _csp() -> str:
    """The page's Content-Security-Policy: its own style, its own and ``data:`` images.

    Nothing else loads or runs, even if some markup slipped past the sanitizer.
    """
    digest = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    return (
        f"default-src 'none'; img-src 'self' data:; style-src 'sha256-{digest}'; "
        "base-uri 'none'; form-action 'none'"
    )


def inline_images(body: str, report: Report) -> str:
    """``body`` with each ``src="assets/<name>"`` made a ``data:`` URI, in one pass.

    One substitution over the page (not one ``str.replace`` per image) keeps a
    notebook of thousands of images linear in its size.
    """
    uris: dict[str, str] = {}

    def uri(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in uris:
            asset = report.assets.get(name)
            if asset is None or not asset.data:
                uris[name] = match.group(0)
            else:
                data = base64.b64encode(asset.data).decode("ascii")
                uris[name] = f'src="data:{asset.mime};base64,{data}"'
        return uris[name]

    return _ASSET_SRC.sub(uri, body)


def to_html(report: Report, *, collapse_lines: int = DEFAULT_COLLAPSE_LINES) -> str:
    """The whole report as one HTML page: images inline, everything sanitized."""
    body = markdown_to_html(
        to_markdown(report, asset_url=relative_url, max_chars=None, collapse_lines=collapse_lines)
    )
    body = inline_images(body, report)
    title = html_lib.escape(report.title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="cml-nb">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )
