"""The QR code of an interactive login (``Capabilities.interactive_login``), re-encoded from its payload (on
WhatsApp Web, the page's ``data-ref``) for a terminal and a PNG."""

from __future__ import annotations

from pathlib import Path

from wabulk.settings import Settings, ensure_private_dir

# Two QR rows per text line: upper half, lower half, both, none.
_UPPER, _LOWER, _FULL, _EMPTY = "\u2580", "\u2584", "\u2588", " "


def matrix(payload: str, border: int = 2) -> list[list[bool]]:
    """The QR modules for ``payload`` (True = dark), with a quiet zone of ``border`` modules."""
    import segno

    code = segno.make(payload, error="L", micro=False)
    rows = [[bool(v) for v in row] for row in code.matrix]
    size = len(rows) + 2 * border
    blank = [False] * size
    return (
        [blank[:] for _ in range(border)]
        + [[False] * border + row + [False] * border for row in rows]
        + [blank[:] for _ in range(border)]
    )


def render_terminal(payload: str, *, invert: bool = True, border: int = 2) -> str:
    """The QR as half-block text (two module rows per line, so it fits an 80x40 terminal).

    With ``invert`` (the default), *light* modules are drawn, which reads correctly on the usual dark
    terminal background; pass ``invert=False`` for light backgrounds.
    """
    grid = matrix(payload, border)
    if len(grid) % 2:
        grid.append([False] * len(grid[0]))
    lines = []
    for top, bottom in zip(grid[0::2], grid[1::2], strict=True):
        line = []
        for a, b in zip(top, bottom, strict=True):
            ink_a, ink_b = (not a, not b) if invert else (a, b)
            line.append(_FULL if ink_a and ink_b else _UPPER if ink_a else _LOWER if ink_b else _EMPTY)
        lines.append("".join(line))
    return "\n".join(lines)


def png_path(settings: Settings, session: str) -> Path:
    """Where the login QR of ``session`` is saved."""
    return settings.home / "qr" / f"{session}.png"


def save_png(payload: str, path: Path, *, scale: int = 8) -> Path:
    """Save the QR as a PNG (a private file: it can link the account while it is valid)."""
    import segno

    ensure_private_dir(path.parent)
    segno.make(payload, error="L", micro=False).save(str(path), kind="png", scale=scale, border=4)
    path.chmod(0o600)
    return path
