"""Typed outcomes: every Outcome's exit code per command and HTTP status, replies read once, metrics by field.

The tables here are the documented ones (README "exit code" table, ``peerbox
handle``'s and ``logic push``'s lines); each row is asserted, so a change to
:func:`peerbox.trust.exit_code` or :func:`peerbox.net._endpoints.status_for`
that moves a code fails here first.
"""

from __future__ import annotations

import pytest

from peerbox.net._metrics import Metrics
from peerbox.net._endpoints import status_for
from peerbox.trust import LIMIT_KINDS, Handled, Outcome, Usage, exit_code, outcome_of
from peerbox.trust._outcome import EXIT_CODES, Via

ALL_LIMITS = {"limit_fuel", "limit_timeout", "limit_memory", "limit_stack", "limit_hostcalls"}


def test_outcome_values_are_the_strings_metrics_and_messages_show() -> None:
    assert [str(o) for o in Outcome] == ["ok", "script_error", "limit", "denied", "rate_limited", "rejected"]
    denied: object = Outcome.DENIED  # equal to the string, as tests and dashboards compare it
    assert denied == "denied" and f"{Outcome.LIMIT}" == "limit"
    assert [o for o in Outcome if o.signed] == [Outcome.OK, Outcome.SCRIPT_ERROR, Outcome.LIMIT,
                                                Outcome.DENIED, Outcome.RATE_LIMITED]
    assert [o for o in Outcome if o.ran] == [Outcome.OK, Outcome.SCRIPT_ERROR, Outcome.LIMIT]
    assert set(LIMIT_KINDS) == ALL_LIMITS


def test_exit_code_table_for_every_outcome() -> None:
    assert dict(EXIT_CODES) == {Outcome.OK: 0, Outcome.SCRIPT_ERROR: 4, Outcome.LIMIT: 5, Outcome.DENIED: 6,
                                Outcome.RATE_LIMITED: 9, Outcome.REJECTED: 2}
    vias: tuple[Via, ...] = ("handle", "send", "push", "call", "revoke")
    for via in vias:
        for outcome in Outcome:
            assert exit_code(outcome, via=via) == EXIT_CODES[outcome]


@pytest.mark.parametrize(("kind", "handle_exec", "handle_logic", "send", "push"), [
    ("compile_error", 4, 3, 3, 3),
    ("breaks_dependent", 4, 3, 4, 3),
    ("not_found", 4, 4, 4, 2),
    ("history_mismatch", 4, 4, 4, 8),
    ("runtime_error", 4, 4, 4, 4),
    ("io_error", 4, 4, 4, 4),
    ("unavailable", 4, 4, 4, 4),
    ("invalid_argument", 4, 4, 4, 4),
])
def test_exit_code_of_script_errors_by_kind(kind: str, handle_exec: int, handle_logic: int, send: int,
                                            push: int) -> None:
    e = Outcome.SCRIPT_ERROR
    assert exit_code(e, kind, via="handle") == handle_exec
    assert exit_code(e, kind, via="handle", logic=True) == handle_logic
    assert exit_code(outcome_of(False, kind), kind, via="send") == send
    assert exit_code(outcome_of(False, kind, logic=True), kind, via="push") == push


@pytest.mark.parametrize(("kind", "handle", "send", "call", "revoke"), [
    ("bad_arguments", 4, 4, 2, 4),       # the caller's arguments do not match the published function
    ("no_such_function", 4, 4, 2, 4),    # the peer publishes no such function
    ("bad_token", 4, 4, 4, 2),           # a revocation that carries no token
    ("wrong_subject", 4, 4, 4, 2),       # a revocation of a token about another peer
    ("unavailable", 4, 4, 4, 4),
    ("runtime_error", 4, 4, 4, 4),
])
def test_exit_code_of_call_and_revoke_refusals(kind: str, handle: int, send: int, call: int, revoke: int) -> None:
    outcome = outcome_of(False, kind)
    assert outcome is Outcome.SCRIPT_ERROR  # a signed reply: HTTP 200, like a script error
    assert exit_code(outcome, kind, via="handle") == handle
    assert exit_code(outcome, kind, via="send") == send
    assert exit_code(outcome, kind, via="call") == call
    assert exit_code(outcome, kind, via="revoke") == revoke


def test_rate_limited_is_a_signed_refusal_with_exit_9_whatever_the_command() -> None:
    outcome = outcome_of(False, "rate_limited")
    assert outcome is Outcome.RATE_LIMITED and outcome.signed and not outcome.ran
    vias: tuple[Via, ...] = ("handle", "send", "push", "call", "revoke")
    assert {exit_code(outcome, "rate_limited", via=v) for v in vias} == {9}
    # the denials and limits of a call keep the codes send gives them
    assert exit_code(outcome_of(False, "denied"), "denied", via="call") == 6
    assert exit_code(outcome_of(False, "limit_timeout"), "limit_timeout", via="call") == 5
    assert exit_code(outcome_of(False, "denied"), "denied", via="revoke") == 6


def test_outcome_of_a_reply() -> None:
    assert outcome_of(True, None) is Outcome.OK
    assert outcome_of(False, "denied") is Outcome.DENIED
    for kind in [*ALL_LIMITS, "limit_future", "limit"]:  # a newer peer's limit still counts as one
        assert outcome_of(False, kind) is Outcome.LIMIT
        assert outcome_of(False, kind, logic=True) is Outcome.SCRIPT_ERROR  # logic requests run no script
    for other in ("compile_error", "runtime_error", "", None):
        assert outcome_of(False, other) is Outcome.SCRIPT_ERROR
    # what `send` has always said: a denied reply 6, a limit 5
    assert exit_code(outcome_of(False, "denied"), "denied", via="send") == 6
    assert exit_code(outcome_of(False, "limit_fuel"), "limit_fuel", via="send") == 5


@pytest.mark.parametrize(("outcome", "kind", "status"), [
    (Outcome.OK, None, 200),
    (Outcome.SCRIPT_ERROR, "runtime_error", 200),
    (Outcome.SCRIPT_ERROR, "denied", 200),  # a host call refused inside the run: still a signed reply
    (Outcome.LIMIT, "limit_timeout", 200),
    (Outcome.DENIED, "denied", 403),
    (Outcome.RATE_LIMITED, "rate_limited", 429),
    (Outcome.REJECTED, "bad_signature", 401),
    (Outcome.REJECTED, "bad_key", 401),
    (Outcome.REJECTED, "replay", 409),
    (Outcome.REJECTED, "too_large", 413),
    (Outcome.REJECTED, "wrong_target", 404),
    (Outcome.REJECTED, "malformed", 400),
    (Outcome.REJECTED, "expired", 400),
    (Outcome.REJECTED, None, 400),
])
def test_http_status_for_every_outcome(outcome: Outcome, kind: str | None, status: int) -> None:
    error = None if kind is None else {"kind": kind, "message": "m"}
    assert status_for(Handled(outcome=outcome, body=b"", error=error)) == status


def test_usage_map_round_trip() -> None:
    usage = Usage(fuel=12, wall_ms=3, peak_memory=65536)
    assert usage.as_map() == {"fuel": 12, "wall_ms": 3, "peak_memory": 65536}
    assert Usage.from_map(usage.as_map()) == usage
    assert Usage.from_map({"fuel": 1}) == Usage(fuel=1)
    assert Usage.from_map({"fuel": "1"}) is None and Usage.from_map(None) is None
    assert Usage.from_map({"fuel": True}) is None  # a bool is no count


def test_metrics_read_fields_not_bodies_or_messages() -> None:
    m = Metrics()
    junk = b"not cbor at all"  # the body is never decoded
    m.answered(Handled(outcome=Outcome.OK, body=junk, usage=Usage(fuel=5000)), 0.01)
    m.answered(Handled(outcome=Outcome.SCRIPT_ERROR, body=junk, usage=Usage(fuel=7),
                       error={"kind": "denied", "message": "nothing to parse here"},
                       denied_action="fs.write"), 0.02)
    m.answered(Handled(outcome=Outcome.DENIED, body=junk, error={"kind": "denied", "message": "x"},
                       denied_action="logic.write"), 0.0)
    m.answered(Handled(outcome=Outcome.REJECTED, body=junk, error={"kind": "replay", "message": "x"}), 0.0)
    m.record(Handled(outcome=Outcome.REJECTED, body=b""))
    m.unhandled("busy")
    assert m.requests == {"ok": 1, "script_error": 1, "denied": 1, "rejected": 2, "busy": 1}
    assert m.denials == {"fs.write": 1, "logic.write": 1}
    assert m.rejections == {"replay": 1, "unknown": 1}
    assert m.fuel.count == 2 and m.fuel.sum == 5007
    assert m.seconds.count == 4
    text = m.render()
    assert 'peerbox_requests_total{outcome="script_error"} 1' in text
    assert 'peerbox_denials_total{action="fs.write"} 1' in text

