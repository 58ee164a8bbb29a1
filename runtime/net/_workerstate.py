"""What a worker does with shared state (``peerbox serve --state nats://...``): the stores it hands
its peers' handlers, and the reply cache around them.

:class:`WorkerState` owns the :class:`~peerbox.net._jetstream.JetStreamState`
(opened by :meth:`WorkerState.open`, closed by :meth:`WorkerState.close`)
and gives the worker:

- :meth:`WorkerState.stores_for`: the replay guard and revocations a hosted
  peer's :class:`~peerbox.trust.ExecHandler` uses instead of its SQLite and
  file ones, and :meth:`WorkerState.rates_for` its rate buckets
  (:mod:`peerbox.net._jslimits`); :attr:`WorkerState.accounts`, the quota
  ledger and S3 tally of its peers' contexts (:mod:`peerbox.net._jsquota`);
- :meth:`WorkerState.follow_logic` and :meth:`WorkerState.logic_changed`: the hosted
  peers' logic modules, the same on every worker (:mod:`peerbox.net._jslogic`);
- with the reply cache on, :meth:`WorkerState.remember` keeps every signed
  answer to a request whose nonce was recorded (on the pool thread, *before*
  the answer is handed back: a reply that left is always in the cache), and
  :meth:`WorkerState.replayed` answers a request refused as ``replay`` with
  the answer kept for its very bytes (the request hash), if any.

Only a request refused ``replay`` looks in the cache, so the cache costs
nothing on the way of a fresh request but the one write. A retry that
arrives while the first attempt still runs finds nothing yet and gets
``replay`` (retry later). Failures of the cache are logged and never change
an answer: a reply that could not be kept still leaves (its retry then gets
``replay``, as without a cache).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .._errors import Error
from ..peer import Peer
from ..run import split_module_name
from ..trust import Envelope, Handled, LocalRevocations, Outcome, RateStore, Revocations
from ..wire import ReplayGuard, request_digest
from ._endpoints import answer_response
from ._h2server import HttpResponse
from ._jetstream import REPLY_BYTES, REPLY_TTL, JetStreamState
from ._jslimits import LIMIT_BUCKETS, JetStreamRates
from ._jslogic import LOGIC_BUCKET, SharedLogic
from ._jsquota import JetStreamAccounts
from ._jsstores import CachedReply, JetStreamNonces, JetStreamRevocations, ReplyCache, SharedRevocations

__all__ = ["WorkerState"]

log = logging.getLogger("peerbox.state")


class WorkerState:
    """Shared state of one worker process on JetStream (see the module docstring).

    ``url`` is the NATS server (``nats://HOST:PORT``); ``reply_cache`` turns
    the reply cache on (``reply_ttl`` s at most per reply, ``reply_bytes`` in
    all); ``share``: use the process's connection to that server if one is open (a test making
    several workers in one process passes False). Raises
    :class:`~peerbox.net._jetstream.SharedStateError` from
    :meth:`open` when JetStream cannot be reached.
    """

    def __init__(self, url: str, *, reply_cache: bool = False, timeout: float = 5.0,
                 reply_ttl: float = REPLY_TTL, reply_bytes: int = REPLY_BYTES, share: bool = True) -> None:
        self.state = JetStreamState(url, timeout=timeout, replies=reply_cache, reply_ttl=reply_ttl,
                                    reply_bytes=reply_bytes, buckets=(*LIMIT_BUCKETS, (LOGIC_BUCKET, None)),
                                    share=share)
        self.reply_cache = reply_cache
        #: the quota stores the worker's peer contexts use (:mod:`peerbox.net._jsquota`)
        self.accounts = JetStreamAccounts(self.state)
        self.revocations: JetStreamRevocations | None = None
        self.replies: ReplyCache | None = None
        self.logic: SharedLogic | None = None

    def open(self) -> WorkerState:
        """Connect, open the buckets, start the revocation watch. Raises
        :class:`~peerbox.net._jetstream.SharedStateError` or :class:`~peerbox.UsageError`."""
        self.state.open()
        try:
            self.revocations = JetStreamRevocations(self.state)
            self.revocations.start()
            self.replies = ReplyCache(self.state) if self.reply_cache else None
        except BaseException:
            self.state.close()
            raise
        return self

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.state.close()

    def follow_logic(self, peers: Sequence[Peer], *, timeout: float = 60.0) -> None:
        """Apply the shared logic changes of ``peers`` (the worker's hosted ones) to this root: those
        the bucket holds now before returning, each later one as it comes. Raises
        :class:`~peerbox.net._jetstream.SharedStateError` when the first take over ``timeout`` s."""
        self.logic = SharedLogic(self.state, peers)
        self.logic.follow(timeout)

    def logic_changed(self, peer: Peer, module: str, statement: bytes) -> None:
        """A ``peerbox/logic`` change of ``peer``'s ``module`` was run here: share the version it
        recorded (if it did; ``statement``: the installer's) with the other workers. Never raises."""
        parsed = split_module_name(module)
        if self.logic is not None and parsed is not None:
            self.logic.publish(peer, parsed[1], statement)

    def stores_for(self, peer: Peer, local: LocalRevocations) -> tuple[ReplayGuard, Revocations]:
        """The replay guard and revocations of hosted ``peer`` (``local``: its default ones, still
        consulted for revocations)."""
        assert self.revocations is not None, "WorkerState.open() first"
        return JetStreamNonces(self.state, peer.public_key), SharedRevocations(self.revocations, local)

    def rates_for(self, peer: Peer) -> RateStore:
        """The rate buckets of hosted ``peer``, shared by every worker (:class:`JetStreamRates`)."""
        return JetStreamRates(self.state, peer.public_key)

    def replayed(self, env: Envelope, handled: Handled) -> HttpResponse | None:
        """The answer kept for ``env`` (refused as ``handled``) when that refusal is ``replay`` and the
        cache holds one; else None. Never raises (a cache failure is logged: the refusal stands)."""
        replies = self.replies
        if replies is None or handled.outcome is not Outcome.REJECTED or handled.kind != "replay":
            return None
        try:
            kept = replies.get(env.target, request_digest(env.data))
        except Error as exc:
            log.warning("reply cache: %s", exc)
            return None
        return None if kept is None else kept.response()

    def remember(self, env: Envelope, handled: Handled, *, now: int, for_router: bool = False) -> None:
        """Keep the signed answer ``handled`` to ``env`` until ``env`` expires (every signed answer
        but ``unavailable``: its nonce was recorded, so a retry of the same bytes could only be
        refused ``replay``).
        Never raises (failures are logged)."""
        replies = self.replies
        if replies is None or not handled.signed or handled.kind == "unavailable":
            return  # unavailable: the nonce may not be recorded (the store failed): judge a retry afresh
        response = answer_response(handled, for_router=for_router)
        reply = CachedReply(response.status, tuple(response.headers), bytes(response.body))
        try:
            replies.put(env.target, request_digest(env.data), reply, ttl=float(env.exp - now))
        except Error as exc:
            log.warning("reply cache: an answer was not kept: %s", exc)
