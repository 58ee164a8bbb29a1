"""db::query and db::count: the filter language against a Python model, indexes, pagination, budgets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbox.hostcalls import Budget, Dispatch, HostCallError, Op, Records, RecordStore
from peerbox.hostcalls._dbquery import MAX_FILTER_DEPTH, MAX_IN

DIDS = ["did:key:z6MkA", "did:key:z6MkB", "did:key:z6MkC"]
TEXTS = ["", "a", "ab", "abc", "b", "ba", "é", "é!", "\U0010ffff", "\U0010ffffa"]
STATUSES = ["new", "seen", "spam", None]

#: The tests that hold for both record stores run on each (s3: SeaweedFS, a prefix per test).
BOTH = pytest.mark.parametrize("records", ["sqlite", pytest.param("s3", marks=pytest.mark.slow)], indirect=True)
ON_S3 = pytest.mark.parametrize("records", [pytest.param("s3", marks=pytest.mark.slow)], indirect=True)


def _message() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda f, t, s, status, level: {k: v for k, v in
                                        {"from": f, "text": t, "sent": s, "status": status, "level": level}.items()
                                        if v is not None},
        st.sampled_from(DIDS), st.sampled_from(TEXTS), st.integers(0, 20), st.sampled_from(STATUSES),
        st.one_of(st.none(), st.integers(0, 10)))


def _condition() -> st.SearchStrategy[tuple[str, Any]]:
    """One (field, condition) of the filter language, over small domains so that rows match."""
    rng = st.fixed_dictionaries({}, optional={"gt": st.integers(-1, 21), "ge": st.integers(-1, 21),
                                              "lt": st.integers(-1, 21), "le": st.integers(-1, 21),
                                              "ne": st.integers(0, 20)})
    return st.one_of(
        st.tuples(st.just("from"), st.sampled_from(DIDS)),
        st.tuples(st.just("from"), st.fixed_dictionaries({"in": st.lists(st.sampled_from(DIDS), max_size=3)})),
        st.tuples(st.just("sent"), st.integers(0, 20)),
        st.tuples(st.just("sent"), rng.filter(bool)),
        st.tuples(st.just("text"), st.fixed_dictionaries({"prefix": st.sampled_from(TEXTS + ["\U0010ffff" * 2])})),
        st.tuples(st.just("status"), st.sampled_from(STATUSES)),
        st.tuples(st.just("status"), st.fixed_dictionaries({"ne": st.sampled_from(STATUSES)})),
        st.tuples(st.just("level"), st.fixed_dictionaries({"in": st.lists(st.integers(0, 10), max_size=3)})),
    )


def _filter() -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.lists(_condition(), max_size=3).map(dict)
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"or": xs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"and": xs}),
        inner.map(lambda x: {"not": x})), max_leaves=4)


def _holds(rec: dict[str, Any], where: dict[str, Any]) -> bool:
    """The Python model of a filter (SQL's NULL logic: a comparison with an absent field is unknown,
    and NOT of unknown is unknown: the row is out)."""
    return _eval(rec, where) is True


def _eval(rec: dict[str, Any], where: dict[str, Any]) -> bool | None:
    results: list[bool | None] = []
    for name, cond in where.items():
        if name in ("and", "or"):
            subs = [_eval(rec, w) for w in cond]
            if name == "and":
                results.append(False if False in subs else None if None in subs else True)
            else:
                results.append(True if True in subs else None if None in subs else False)
        elif name == "not":
            sub = _eval(rec, cond)
            results.append(None if sub is None else not sub)
        else:
            ops = cond if isinstance(cond, dict) else {"eq": cond}
            v = rec.get(name)
            for op, x in ops.items():
                if op in ("eq", "ne") and x is None:
                    results.append((v is None) == (op == "eq"))
                elif v is None:
                    results.append(False if op == "in" and not x else None)
                elif op == "in":
                    results.append(v in x)
                elif op == "prefix":
                    results.append(v.startswith(x))
                else:
                    results.append({"eq": v == x, "ne": v != x, "gt": v > x, "ge": v >= x, "lt": v < x,
                                    "le": v <= x}[op])
    return False if False in results else None if None in results else True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_message(), max_size=25), where=_filter(), desc=st.booleans())
def test_queries_agree_with_the_model(records: Records, rows: list[dict[str, Any]], where: dict[str, Any],
                                      desc: bool) -> None:
    _agree(records, rows, where, desc)


@ON_S3
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_message(), max_size=15), where=_filter(), desc=st.booleans())
def test_queries_agree_with_the_model_on_s3(records: RecordStore, rows: list[dict[str, Any]],
                                            where: dict[str, Any], desc: bool) -> None:
    _agree(records, rows, where, desc)


def _agree(records: RecordStore, rows: list[dict[str, Any]], where: dict[str, Any], desc: bool) -> None:
    for key in [r["_key"] for r in records.query("inbox", {"limit": 1000})["items"]]:  # type: ignore[attr-defined]
        records.delete("inbox", key)
    stored = {records.insert("inbox", r): r for r in rows}
    want = [k for k, r in stored.items() if _holds(r, where)]
    want.sort(key=lambda k: (stored[k]["sent"], k) if not desc else (-stored[k]["sent"], k))
    assert records.count("inbox", where) == len(want)
    got: list[Any] = []
    after = None
    for _ in range(30):  # pages of 4, in sent order, through the cursor
        spec: dict[str, Any] = {"where": where, "order_by": "-sent" if desc else "sent", "limit": 4}
        if after is not None:
            spec["after"] = after
        page = records.query("inbox", spec)
        got += [r["_key"] for r in page["items"]]  # type: ignore[attr-defined]
        after = page["next"]
        if after is None:
            break
    assert got == want


def test_the_declared_indexes_are_used(records: Records) -> None:
    plan = records.explain("inbox", {"where": {"from": DIDS[0], "sent": {"ge": 3}}, "order_by": "sent"})
    assert any("USING INDEX i_inbox__from__sent (f_from=? AND f_sent>?)" in p for p in plan), plan
    assert not any("TEMP B-TREE" in p for p in plan), plan  # the index gives the order too
    plan = records.explain("inbox", {"where": {"status": {"in": ["new", "seen"]}}})
    assert any("USING INDEX i_inbox__status (f_status=?)" in p for p in plan), plan
    plan = records.explain("inbox", {"where": {"from": {"prefix": "did:key:z6Mk"}}})
    assert any("USING INDEX i_inbox__from__sent (f_from>? AND f_from<?)" in p for p in plan), plan
    plan = records.explain("inbox", {"where": {"text": "a"}})  # no index on text: a scan, same answers
    assert any(p.startswith("SCAN") for p in plan), plan


@BOTH
def test_pagination_is_stable_under_inserts(records: RecordStore) -> None:
    for sent in range(0, 20, 2):
        records.insert("inbox", {"from": DIDS[0], "text": "x", "sent": sent})
    seen: list[int] = []
    page = records.query("inbox", {"order_by": "sent", "limit": 3})
    inserted = 0
    while True:
        seen += [r["sent"] for r in page["items"]]  # type: ignore[attr-defined]
        if page["next"] is None:
            break
        # between pages, rows arrive before and after the cursor, with equal sort values too
        for sent in (0, seen[-1], seen[-1] + 1):
            records.insert("inbox", {"from": DIDS[1], "text": "new", "sent": sent})
            inserted += 1
        page = records.query("inbox", {"order_by": "sent", "limit": 3, "after": page["next"]})
    originals = list(range(0, 20, 2))
    assert all(seen.count(s) >= 1 for s in originals)
    assert seen == sorted(seen)  # never a step back: no row repeated, none skipped behind the cursor
    keys = records.query("inbox", {"order_by": "sent", "limit": 1000})["items"]
    assert len(keys) == 10 + inserted  # type: ignore[arg-type]


@BOTH
@pytest.mark.parametrize(("spec", "message"), [
    ({"where": {"nope": 1}}, "where: 'nope' is not a scalar field of collection 'inbox'"),
    ({"where": {"tags": 1}}, "where: 'tags' is not a scalar field"),
    ({"where": {"sent": "x"}}, "where: 'sent' is a timestamp, got string"),
    ({"where": {"sent": {"gt": None}}}, "where: 'sent': gt needs a value, not ()"),
    ({"where": {"sent": {"near": 3}}}, "unknown operator 'near'"),
    ({"where": {"sent": {"prefix": "1"}}}, "prefix takes a string, on a string or did field"),
    ({"where": {"from": {"in": DIDS * 40}}}, f"in takes an array of at most {MAX_IN} values"),
    ({"where": {"or": []}}, "or takes a non-empty array of filters"),
    ({"where": [1]}, "where: expected a map of conditions, got array"),
    ({"where": {"not": {"not": {"not": {"not": {"sent": 1}}}}}}, f"nested deeper than {MAX_FILTER_DEPTH}"),
    ({"where": {"or": [{"sent": i} for i in range(70)]}}, "more than 64 conditions"),
    ({"order_by": "status"}, "order_by: 'status' is optional; only required fields can order"),
    ({"order_by": ["sent", "-sent"]}, "order_by: 'sent' twice"),
    ({"order_by": 3}, "order_by: a field name"),
    ({"limit": 0}, "limit must be an int from 1 to 1000"),
    ({"limit": 1001}, "limit must be an int from 1 to 1000"),
    ({"after": "!!"}, "after: not a cursor"),
    ({"sort": "sent"}, "db::query: unknown key 'sort'"),
])
def test_bad_queries_are_refused(records: RecordStore, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(HostCallError) as info:
        records.query("inbox", spec)
    assert info.value.kind == "invalid_argument" and message in info.value.message, info.value.message


@BOTH
def test_the_key_filters_and_orders(records: RecordStore) -> None:
    for sent in range(5):
        records.insert("inbox", {"from": DIDS[sent % 2], "text": "x", "sent": sent})
    page = records.query("inbox", {"where": {"_key": {"ge": 2}}, "order_by": "-_key", "limit": 2})
    assert [r["_key"] for r in page["items"]] == [5, 4]  # type: ignore[attr-defined]
    rest = records.query("inbox", {"where": {"_key": {"ge": 2}}, "order_by": "-_key", "after": page["next"]})
    assert [r["_key"] for r in rest["items"]] == [3, 2] and rest["next"] is None  # type: ignore[attr-defined]
    contacts = [{"handle": h, "did": d} for h, d in zip(["cy", "ann", "bo"], DIDS, strict=True)]
    for c in contacts:
        records.insert("contacts", c)
    got = records.query("contacts", {"where": {"handle": {"prefix": ""}}, "order_by": "handle"})
    assert got == {"items": sorted(contacts, key=lambda c: c["handle"]), "next": None}


@BOTH
def test_a_cursor_belongs_to_its_query(records: RecordStore) -> None:
    for sent in range(3):
        records.insert("inbox", {"from": DIDS[0], "text": "x", "sent": sent})
    nxt = records.query("inbox", {"order_by": "sent", "limit": 1})["next"]
    with pytest.raises(HostCallError, match="the cursor was made for order_by 'sent,_key', not '-sent,_key'"):
        records.query("inbox", {"order_by": "-sent", "after": nxt})
    with pytest.raises(HostCallError, match="a cursor of another collection or query"):
        records.query("contacts", {"after": nxt})


@BOTH
def test_the_dispatcher_charges_the_budget_and_maps_errors(records: RecordStore) -> None:
    budget = Budget(max_bytes_written=100)
    d = Dispatch(None, budget, records=lambda: records)
    assert d.call(Op.DB_INSERT, ["inbox", {"from": DIDS[0], "text": "hi", "sent": 1}]) == 1
    assert d.call(Op.DB_GET, ["inbox", 1]) == {"_key": 1, "from": DIDS[0], "text": "hi", "sent": 1}
    assert d.call(Op.DB_COUNT, ["inbox"]) == 1 and d.call(Op.DB_COUNT_WHERE, ["inbox", {"sent": 2}]) == 0
    page = d.call(Op.DB_QUERY, ["inbox", {}])
    assert page == {"items": [{"_key": 1, "from": DIDS[0], "text": "hi", "sent": 1}], "next": None}
    assert d.call(Op.DB_UPDATE, ["inbox", 1, {"text": "ho"}]) == {"_key": 1, "from": DIDS[0], "text": "ho",
                                                                  "sent": 1}
    assert d.call(Op.DB_DELETE, ["inbox", 1]) is True
    from peerbox.hostcalls import BudgetExceeded
    with pytest.raises(BudgetExceeded):
        d.call(Op.DB_INSERT, ["inbox", {"from": DIDS[0], "text": "x" * 100, "sent": 1}])
    with pytest.raises(HostCallError) as info:
        d.call(Op.DB_GET, ["../etc", 1])
    assert (info.value.kind, info.value.message) == ("invalid_argument", "db::get: '../etc' is not a collection name")
    with pytest.raises(HostCallError) as info:
        d.call(Op.DB_GET, ["inbox", 1.5])
    assert info.value.message == "db::get: a key is an int or a string, not float"
    with pytest.raises(HostCallError) as info:
        Dispatch(None).call(Op.DB_COUNT, ["inbox"])
    assert info.value.kind == "no_storage"


def test_a_peer_without_records_says_so(tmp_path: Any) -> None:
    from peerbox.hostcalls import FsBackend
    backend = FsBackend(tmp_path / "files")
    with pytest.raises(HostCallError) as info:
        Dispatch(backend).call(Op.DB_COUNT, ["inbox"])
    assert info.value.kind == "unsupported" and "schema.toml" in info.value.message
    backend.close()
