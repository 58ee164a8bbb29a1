"""The trust path, sans sockets: may this signed request run here, and the signed answer.

In the order a request is handled::

    _exec         ``ExecHandler``: open the envelope (signature, target, time, nonce), the
                  capability chains, the policy's ``exec`` decision, the caller's rate and the
                  run's limits (``check``), then compile and run in the peer's context and sign
                  the reply (``run``); ``check_envelope`` sends the other request types to:
    _call         ``peerbox/call``: the ``call`` decision, the published function and its
                  arguments, then a run of it with the owner's rights (``CallAdmitted``)
    _revoke       ``peerbox/revoke``: an issuer's revocation, recorded in the peer's list
    _revocations  ``Revocations``: revoked token ids (an interface; ``LocalRevocations``: the files)
    _host         ``RequestHost``: what ``_call`` and ``_revoke`` use of the handler (a protocol)
    _logic_push   ``peerbox/logic`` requests: their format, ``logic.read``/``logic.write``
                  decisions, installing a module; answered like exec requests
    _rate         ``RateLimiter``: per-caller rate limits (GCRA in ``<peer dir>/rates.sqlite``)
    _handled      ``Handled``: what handling a request came to (outcome, body, usage, denied action)
    _outcome      ``Outcome``, the error kinds, ``Usage``; ``outcome_of`` a reply, and ``exit_code``:
                  the one table from an outcome to the exit code of a command

Below: :mod:`peerbox.peer`, :mod:`peerbox.run`, :mod:`peerbox.wire`, :mod:`peerbox.policy`.
Above: :mod:`peerbox.net` (the HTTP/2 worker) and :mod:`peerbox.cli` (``peerbox handle``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:
    from ._exec import Admitted, AnyAdmitted, Envelope, ExecHandler, NONCE_FILE
    from ._call import CallAdmitted, check_call_request, run_call
    from ._revoke import check_revoke_request
    from ._revocations import LocalRevocations, Revocations
    from ._rate import RATES_FILE, RateDenial, RateLimiter, RateStore, RateStoreError, gcra
    from ._logic_push import (LogicAdmitted, LogicRequest, MAX_LOGIC_REQUEST, TYP_LOGIC, make_logic_request,
        open_logic_request, verify_logic_request)
    from ._handled import Handled
    from ._outcome import LIMIT_KINDS, LimitKind, Outcome, Usage, exit_code, outcome_of

__all__ = ["Admitted", "AnyAdmitted", "Envelope", "ExecHandler", "NONCE_FILE", "CallAdmitted",
           "check_call_request", "run_call", "check_revoke_request", "LocalRevocations", "Revocations",
           "RATES_FILE", "RateDenial",
           "RateLimiter", "RateStore", "gcra",
           "RateStoreError", "LogicAdmitted", "LogicRequest", "MAX_LOGIC_REQUEST",
           "TYP_LOGIC", "make_logic_request", "open_logic_request", "verify_logic_request", "Handled",
           "Outcome", "Usage", "LimitKind", "LIMIT_KINDS", "outcome_of", "exit_code"]

__getattr__, __dir__ = attach(__name__, {
    "Admitted": "._exec",
    "AnyAdmitted": "._exec",
    "Envelope": "._exec",
    "ExecHandler": "._exec",
    "NONCE_FILE": "._exec",
    "CallAdmitted": "._call",
    "check_call_request": "._call",
    "run_call": "._call",
    "check_revoke_request": "._revoke",
    "LocalRevocations": "._revocations",
    "Revocations": "._revocations",
    "RATES_FILE": "._rate",
    "RateDenial": "._rate",
    "RateLimiter": "._rate",
    "RateStore": "._rate",
    "gcra": "._rate",
    "RateStoreError": "._rate",
    "LogicAdmitted": "._logic_push",
    "LogicRequest": "._logic_push",
    "MAX_LOGIC_REQUEST": "._logic_push",
    "TYP_LOGIC": "._logic_push",
    "make_logic_request": "._logic_push",
    "open_logic_request": "._logic_push",
    "verify_logic_request": "._logic_push",
    "Handled": "._handled",
    "Outcome": "._outcome",
    "Usage": "._outcome",
    "LimitKind": "._outcome",
    "LIMIT_KINDS": "._outcome",
    "outcome_of": "._outcome",
    "exit_code": "._outcome",
})
