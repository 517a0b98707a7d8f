"""The README's relative links and images point at files that exist (the documentation
site checks its own links when ``make docs`` builds it with --strict)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(markdown: str) -> list[str]:
    """Link targets that name a path in the repository (no URL, no bare #anchor), outside
    code blocks and HTML comments."""
    text = re.sub(r"<!--.*?-->", "", markdown, flags=re.S)
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t)]


def test_every_relative_link_in_the_readme_resolves_to_a_file() -> None:
    links = relative_links((ROOT / "README.md").read_text())
    assert len(links) >= 10, links  # the pictures and the links into docs/
    missing = [link for link in links if not (ROOT / link.split("#", 1)[0]).is_file()]
    assert not missing, f"README links to missing files: {missing}"


def test_the_link_finder_sees_links_and_images_but_not_urls_or_code() -> None:
    sample = (
        "![pic](docs/images/a.png) [page](docs/x.md#part) [web](https://example.com)\n"
        "[anchor](#here) <!-- [hidden](nope.md) -->\n```bash\n[code](not-a-link.md)\n```\n"
    )
    assert relative_links(sample) == ["docs/images/a.png", "docs/x.md#part"]


def test_the_readme_stays_short_and_shows_pictures_before_the_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    first_picture = text.index("![")
    assert first_picture < text.index("make serve"), "the first screen shows a picture"
