"""The page scripts (``web/js/*.js``), loaded once from the package.

Each script receives its selectors as arguments (candidates from :mod:`wabulk.web.selectors`): none carries
its own copy, so a fix in ``selectors.py`` reaches every script. A first line ``// @requires matches text_of``
prepends the library files ``lib_matches.js`` / ``lib_text_of.js``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

from wabulk.web import selectors as S

_REQUIRES = re.compile(r"^//\s*@requires\s+(.+)$", re.MULTILINE)


def _read(name: str) -> str:
    return (resources.files("wabulk.web") / "js" / f"{name}.js").read_text(encoding="utf-8")


@functools.cache
def script(name: str) -> str:
    """The script ``web/js/<name>.js`` with the libraries it names in ``@requires`` in front."""
    body = _read(name)
    found = _REQUIRES.search(body)
    libs = found.group(1).split() if found else []
    return "".join(_read(f"lib_{lib}") + "\n" for lib in libs) + body


def names() -> list[str]:
    """Every script in the package (library files included), without the ``.js`` suffix."""
    folder = resources.files("wabulk.web") / "js"
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".js"))


def cands(selector: S.Selector) -> list[list[str]]:
    """A selector's candidates as the scripts take them: ``[[kind, expression], ...]``."""
    return [list(c) for c in selector.resolved]


def run(driver: Any, name: str, *args: Any) -> Any:
    """Run the script ``name`` in the page with ``args`` (``arguments[0]``...)."""
    return driver.execute_script(script(name), *args)
