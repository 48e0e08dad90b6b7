"""The settlements page's code comes from the tested example DAG: every literalinclude and its markers resolve."""

from __future__ import annotations

import re

from tests._paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
_INCLUDE = re.compile(r"^\.\. literalinclude:: (?P<path>\S+)\n(?P<options>(?:   :\S+:.*\n)+)", re.MULTILINE)


def test_every_literalinclude_of_the_settlements_page_resolves() -> None:
    page = (DOCS / "settlements.rst").read_text()
    includes = list(_INCLUDE.finditer(page))
    assert len(includes) == 3
    for include in includes:
        source = (DOCS / include["path"]).resolve()
        text = source.read_text()
        options = dict(re.findall(r"   :(\S+): ?(.*)", include["options"]))
        start, end = options["start-after"], options["end-before"]
        assert text.count(start) == 1, start
        assert text.count(end) == 1, end
        assert text.index(start) < text.index(end)
        snippet = text[text.index(start) + len(start) : text.index(end)]
        assert (
            "SettlementStatusSensor(" in snippet
            or "SettlementStatusSensor.partial(" in snippet
            or "def reconcile(" in snippet
        )


def test_the_page_has_one_title() -> None:
    lines = (DOCS / "settlements.rst").read_text().splitlines()
    titles = [
        lines[i - 1] for i, line in enumerate(lines) if i and set(line) == {"="} and len(line) >= len(lines[i - 1])
    ]
    assert titles == ["Settlements"]
