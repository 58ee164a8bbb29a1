"""String search and replace over a large text param: count the lines that
contain a word, find its first position, replace every occurrence, and
look again."""

from typing import Any


def main(params: dict[str, Any]) -> dict[str, int]:
    text: str = params["text"]
    find, new = params["find"], params["with"]
    lines = 0
    for line in text.split("\n"):
        if find in line:
            lines += 1
    first = text.find(find)
    text = text.replace(find, new)
    return {
        "lines_with": lines,
        "first": first,
        "first_new": text.find(new),
        "left": text.find(find),
        "len": len(text),
    }
