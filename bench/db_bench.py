"""Typed records (issue 19): ``db::insert`` and an indexed ``db::query``, next to ``fs::`` JSON files.

``bench_db(quick)`` returns ``Row``s for the "Storage backends" table of
``bench/run.py`` (group ``storage``; its columns read "write" = one insert,
"read" = one query), all measured in the same run on one fs-backed peer:

* ``db::`` records: ``db::insert`` of one Message record (validated, one
  SQLite row), and ``db::query`` of the 10 newest records of one sender
  since a time (``where: #{from, sent: #{ge}}``, ``order_by: "-sent"``,
  ``limit: 10``), served by the declared ``(from, sent)`` index, over 10,000
  records (1,000 with ``--quick``);
* the ``fs::`` way a script does it without records: one JSON file per
  record under ``inbox/<sender>/<zero-padded sent>.json`` (built by string
  interpolation), and the same query as ``fs::list`` of the sender's
  directory (sorted names) plus ``fs::read`` of the 10 newest files (the
  script would still have to parse them: not counted).

The records and files queried are loaded before the measurement without
an fsync each; every measured write is durable when it returns (the file
and its directory fsynced; the SQLite commit with ``synchronous=FULL``).
Each figure is (best run of N calls − best run of the same loop without the
call) / N, N = 200 (20 with ``--quick``). Run alone:
``python bench/db_bench.py [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _rows import Row

__all__ = ["bench_db"]

SCHEMA = """\
[types.Message]
from = "did"
text = { type = "string", max_len = 4096 }
sent = "timestamp"

[collections.inbox]
type = "Message"
key = "auto"
indexes = [["from", "sent"]]
"""
SENDERS = 10
_LOOP = """\
let i = 0;
let t = 0;
while i < params.n {
    let from = params.senders[i % params.senders.len()];
    let sent = params.base + i;
    CALL;
    i += 1;
}
t
"""
_DB_INSERT = _LOOP.replace("CALL", 'db::insert("inbox", #{from: from, text: params.text, sent: sent})')
_DB_QUERY = _LOOP.replace("CALL", 't += db::query("inbox", #{where: #{from: from, sent: #{ge: params.since}}, '
                          'order_by: "-sent", limit: 10}).items.len()')
_FS_INSERT = _LOOP.replace("CALL", 'let name = `${10000000000 + sent}`; '
                           'fs::write(`inbox/${i % params.senders.len()}/${name}.json`, '
                           '`{"from":"${from}","text":"${params.text}","sent":${sent}}`)')
_FS_QUERY = _LOOP.replace("CALL", """let dir = `inbox/${i % params.senders.len()}`;
    let names = fs::list(dir);
    let k = names.len();
    let got = 0;
    while k > 0 && got < 10 {
        k -= 1;
        if names[k] < `${10000000000 + params.since}.json` { break; }
        t += fs::read(`${dir}/${names[k]}`).len();
        got += 1;
    }""")
_EMPTY = _LOOP.replace("CALL", "t += sent")
_TEXT = "a message of some sixty characters, as inbox messages go..."


def _best(fn: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _preload(peer_dir: Path, files: Path, senders: list[str], count: int) -> None:
    """``count`` records each way, loaded without an fsync each (set-up, not measured): records
    through :class:`~peerbox.hostcalls.Records` in bulk mode, JSON files written directly."""
    import tomllib

    from peerbox.hostcalls import RECORDS_FILE, Records, check_schema

    records = Records(peer_dir / RECORDS_FILE, check_schema(tomllib.loads(SCHEMA), SCHEMA), synchronous="OFF")
    for i in range(count):
        records.insert("inbox", {"from": senders[i % SENDERS], "text": _TEXT, "sent": i})
        (files / "inbox" / str(i % SENDERS) / f"{10_000_000_000 + i}.json").write_text(
            f'{{"from":"{senders[i % SENDERS]}","text":"{_TEXT}","sent":{i}}}')
    records.close()


def bench_db(quick: bool) -> list[Row]:
    import peerbox

    n, rounds, preload = (20, 2, 1_000) if quick else (200, 5, 10_000)
    out: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="peerbox-bench-db-") as tmp:
        root = Path(tmp) / "root"
        store = peerbox.PeerStore(root)
        peer = store.init("bob")
        (peer.paths.dir / "schema.toml").write_text(SCHEMA)
        senders = [store.init(f"s{i}").did for i in range(SENDERS)]
        with peerbox.Contexts(root) as contexts:
            ctx = contexts.get("bob")
            ctx.run(ctx.compile(f"for i in 0..{SENDERS} {{ fs::mkdir(`inbox/${{i}}`) }}"))
            limits = peerbox.Limits(host_calls=n * 12 + 100, timeout=120.0)

            def run(src: str, **params: Any) -> Callable[[], Any]:
                prog = ctx.compile(src)
                full = {"n": n, "senders": senders, "text": _TEXT, "base": 0, "since": 0, **params}
                return lambda: ctx.run(prog, full, limits=limits)

            _preload(peer.paths.dir, peer.paths.storage, senders, preload)
            since = preload - 10 * SENDERS * 2  # the 20 newest of each sender qualify
            empty = _best(run(_EMPTY), rounds)
            rows = {}
            for label, src, extra in (("db_insert", _DB_INSERT, {"base": preload}),
                                      ("fs_insert", _FS_INSERT, {"base": preload + 10 * n * rounds}),
                                      ("db_query", _DB_QUERY, {"since": since}),
                                      ("fs_query", _FS_QUERY, {"since": since})):
                fn = run(src, **extra)
                if label.endswith("insert"):  # each round inserts new records: later bases
                    times = []
                    for r in range(rounds):
                        fn = run(src, **{**extra, "base": int(extra["base"]) + (r + 1) * 2 * n * rounds})
                        times.append(_best(fn, 1))
                    rows[label] = (min(times) - empty) / n * 1e3
                else:
                    fn()  # warm
                    rows[label] = (_best(fn, rounds) - empty) / n * 1e3
    out.append(Row("db_records", f"db:: records ({preload:,} records)", "", unit="ms", group="storage",
                   peerbox=rows["db_insert"], us=rows["db_query"],
                   note="write = db::insert (validated, one SQLite row); read = db::query, 10 newest of a "
                        "sender (index (from, sent))"))
    out.append(Row("db_fs_json", f"fs:: JSON files ({preload:,} records)", "", unit="ms", group="storage",
                   peerbox=rows["fs_insert"], us=rows["fs_query"],
                   note="write = fs::write of one JSON file; read = fs::list of the sender's directory + "
                        "fs::read of the 10 newest (parsing not counted)"))
    return out


if __name__ == "__main__":
    for row in bench_db("--quick" in sys.argv):
        print(f"{row.title}: write {row.peerbox:.3f} ms, read {row.us:.3f} ms ({row.note})")
