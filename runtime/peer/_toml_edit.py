"""Edits of ``peers.toml`` that keep what a person wrote: comments, blank lines, order (sans-IO).

:mod:`._directory` validates entries and does the locking and the atomic
write; this module only turns the file's text into the edited text:

* :func:`set_entry` adds ``[peers.NAME]`` at the end of the file, or changes
  the ``did``/``url`` of an existing entry in place (whatever form it was
  written in: a ``[peers.NAME]`` table, an inline table, dotted keys), through
  ``tomlkit``, which keeps every other byte of the document;
* :func:`remove_entry` cuts the entry's lines out of the text: its header,
  its keys, the comments between them, the comment lines directly above the
  header (no blank line between: they describe it) and the blank lines that
  separated it from what follows. Comments after it, with a blank line or a
  header in between, describe what follows and stay. ``tomlkit`` alone would
  drop them: it files a comment above ``[peers.carol]`` under the table
  before it. An entry in another form (inline, dotted keys) is removed with
  ``tomlkit``.

Both check their result by parsing it again (the entries must be exactly the
old ones with the one change): text that does not check out raises
:class:`EditFailed`, so a surprising hand-written file is never rewritten
into something else.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table

__all__ = ["EditFailed", "set_entry", "remove_entry", "HEADER"]

#: The first line of a ``peers.toml`` that peerbox creates.
HEADER = "# peerbox directory: where peers are reachable (peerbox directory add NAME [DID] [URL])"


class EditFailed(ValueError):
    """The edited text would not hold exactly the intended entries (a form of TOML this module
    does not edit safely, or a file that does not parse)."""


def _entries(text: str) -> dict[str, Any]:
    try:
        peers = tomllib.loads(text).get("peers", {})
    except tomllib.TOMLDecodeError as exc:
        raise EditFailed(str(exc)) from exc
    return dict(peers) if isinstance(peers, dict) else {}


def _checked(old: str, new: str, name: str, value: dict[str, str] | None) -> str:
    """``new`` if its entries are ``old``'s with ``name`` set to ``value`` (None: removed)."""
    want = _entries(old)
    if value is None:
        want.pop(name, None)
    else:
        want[name] = value
    if _entries(new) != want:
        raise EditFailed(f"editing [peers.{name}] would change other entries")
    return new


def set_entry(text: str, name: str, did: str, url: str | None) -> str:
    """``text`` with entry ``name`` set to ``did`` and ``url`` (None: no ``url`` key).

    ``name``, ``did`` and ``url`` must already be validated (plain characters).
    An existing entry is changed where it is; a new one is appended as a
    ``[peers.NAME]`` table (an empty ``text`` starts with :data:`HEADER`).
    Raises :class:`EditFailed`.
    """
    value = {"did": did} if url is None else {"did": did, "url": url}
    try:
        doc = tomlkit.parse(text) if text.strip() else tomlkit.parse(HEADER + "\n")
        if "peers" not in doc:
            doc["peers"] = tomlkit.table(is_super_table=True)
        peers = doc["peers"]
        if name in peers:
            entry = peers[name]
            entry["did"] = did
            if url is not None:
                entry["url"] = url
            elif "url" in entry:
                del entry["url"]
        else:
            table = tomlkit.table()
            for key, item in value.items():
                table[key] = item
            peers[name] = table
        new = tomlkit.dumps(doc)
    except (TOMLKitError, TypeError, KeyError) as exc:
        raise EditFailed(f"cannot edit [peers.{name}]: {exc}") from exc
    return _checked(text, new, name, value)


_HEADER_LINE = re.compile(r"\s*\[\s*(?P<key>[^\]]+?)\s*\]\s*(#.*)?")


def _blank(line: str) -> bool:
    return not line.strip()


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _is_header(line: str) -> str | None:
    """The key of a ``[table]`` header line (not ``[[array]]``), or None."""
    if line.lstrip().startswith("[["):
        return None
    m = _HEADER_LINE.fullmatch(line.rstrip("\r\n"))
    return re.sub(r"\s*\.\s*", ".", m.group("key")).replace('"', "") if m else None


def remove_entry(text: str, name: str) -> str:
    """``text`` without entry ``name`` (see the module's docstring for which lines go).

    Raises :class:`EditFailed` when the result would not be exactly the old
    entries less ``name`` (or ``name`` is not there).
    """
    if name not in _entries(text):
        raise EditFailed(f"no [peers.{name}]")
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _is_header(line) == f"peers.{name}"), None)
    if start is None:
        return _checked(text, _remove_with_tomlkit(text, name), name, None)
    end = next((i for i in range(start + 1, len(lines)) if _is_header(lines[i]) is not None), len(lines))
    # keep the trailing comment block (it describes what follows), cut the blank lines before it
    last = end
    while last > start + 1 and (_blank(lines[last - 1]) or _comment(lines[last - 1])):
        last -= 1
    keep = last
    while keep < end and _blank(lines[keep]):
        keep += 1
    # the comment lines right above the header describe the entry (unless they open the file)
    first = start
    while first > 0 and _comment(lines[first - 1]):
        first -= 1
    if first == 0:
        first = start
    new = "".join(lines[:first] + lines[keep:])
    if keep == len(lines):  # the last entry: no blank lines left dangling at the end
        new = new.rstrip("\n") + "\n" if new.strip() else ""
    return _checked(text, new, name, None)


def _remove_with_tomlkit(text: str, name: str) -> str:
    try:
        doc = tomlkit.parse(text)
        peers = doc["peers"]
        if not isinstance(peers, Table | dict):
            raise EditFailed("'peers' is not a table")
        del peers[name]
        return tomlkit.dumps(doc)
    except (TOMLKitError, KeyError) as exc:
        raise EditFailed(f"cannot remove [peers.{name}]: {exc}") from exc
