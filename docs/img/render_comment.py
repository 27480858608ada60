"""Render a report bundle's report.md the way a GitHub comment shows it, as a PNG.

Usage: python docs/img/render_comment.py runs/train/report docs/img/report-comment.png
(GitHub's own Markdown engine, cmark-gfm, with GitHub-like styles; headless Chromium.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cmarkgfm
from cmarkgfm.cmark import Options

STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif;
       color: #1f2328; background: #f6f8fa; margin: 0; padding: 16px; }
.comment { max-width: 860px; margin: auto; background: #fff; border: 1px solid #d0d7de;
           border-radius: 6px; }
.head { background: #f6f8fa; border-bottom: 1px solid #d0d7de; padding: 8px 16px;
        border-radius: 6px 6px 0 0; color: #59636e; }
.body { padding: 16px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 12px; }
tr:nth-child(2n) { background: #f6f8fa; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; background: #f6f8fa; }
pre { padding: 12px; border-radius: 6px; }
img { max-width: 100%; }
h1, h2 { border-bottom: 1px solid #d8dee4; padding-bottom: .3em; }
"""


def main(bundle: Path, png: Path) -> None:
    """Render the bundle's report.md as GitHub would and screenshot it to ``png``."""
    body = cmarkgfm.github_flavored_markdown_to_html(
        (bundle / "report.md").read_text(), options=Options.CMARK_OPT_UNSAFE
    )
    page = bundle / "comment-preview.html"
    page.write_text(
        f"<!doctype html><meta charset=utf-8><style>{STYLE}</style>"
        f'<div class="comment"><div class="head"><b>github-actions</b> bot commented</div>'
        f'<div class="body">{body}</div></div>'
    )
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--hide-scrollbars", f"--screenshot={png.resolve()}",
         "--window-size=900,1500", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
