"""String building: n CSV records (";"-terminated) made by interpolation and
appended to a buffer; every 1,000 records the buffer is "flushed" (its length
counted, the buffer emptied), as a script writing a large report in chunks would."""

from typing import Any


def main(params: dict[str, Any]) -> dict[str, int]:
    buf = ""
    flushed = 0
    chunks = 0
    for i in range(params["n"]):
        buf += f"{i},item-{i},{i % 97};"
        if i % 1000 == 999:
            flushed += len(buf)
            chunks += 1
            buf = ""
    return {"chars": flushed + len(buf), "chunks": chunks, "tail": len(buf)}
