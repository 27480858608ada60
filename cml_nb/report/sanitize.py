"""HTML sanitizing with nh3 (Rust's ammonia), allowing what GitHub's own sanitizer keeps.

The allowlist follows the elements and attributes that GitHub leaves in rendered
Markdown, so a report looks the same in report.html as in a pull-request comment:
no scripts, styles, event handlers, forms or iframes; links only to http(s),
mailto or relative URLs.
"""

from __future__ import annotations

import re

# fmt: off
TAGS = frozenset((
    "a", "abbr", "b", "bdo", "blockquote", "br", "caption", "cite", "code", "dd", "del",
    "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "picture", "pre", "q",
    "rp", "rt", "ruby", "s", "samp", "small", "source", "span", "strike", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "ul",
    "var", "wbr",
))

_COMMON_ATTRIBUTES = frozenset((
    "abbr", "align", "alt", "aria-describedby", "aria-hidden", "aria-label", "aria-labelledby",
    "axis", "border", "cellpadding", "cellspacing", "char", "charoff", "charset", "clear",
    "color", "cols", "colspan", "compact", "dir", "headers", "height", "hreflang", "hspace",
    "itemprop", "label", "lang", "nowrap", "open", "role", "rows", "rowspan", "rules", "scope",
    "span", "start", "summary", "tabindex", "title", "valign", "width",
))
# fmt: on

ATTRIBUTES: dict[str, set[str]] = {
    "*": set(_COMMON_ATTRIBUTES),
    "a": {"href"},
    "img": {"src", "longdesc"},
    "blockquote": {"cite"},
    "del": {"cite"},
    "ins": {"cite"},
    "q": {"cite"},
    "pre": {"lang"},
    "source": {"srcset", "media", "type"},
}

URL_SCHEMES = frozenset({"http", "https", "mailto"})

_TAG = re.compile(r"<[^>]*>")


def sanitize_html(html: str) -> str:
    """``html`` with everything GitHub would strip removed (scripts' content included)."""
    import nh3

    return nh3.clean(
        html,
        tags=set(TAGS),
        attributes=ATTRIBUTES,
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
        link_rel="noopener noreferrer",
    )


def is_blank(html: str) -> bool:
    """Whether sanitized ``html`` shows nothing (no text and no image)."""
    return "<img" not in html and not _TAG.sub("", html).replace("&nbsp;", "").strip()
