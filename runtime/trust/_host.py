"""What the call and revoke handlers use of the handler of one peer's requests, typed.

:mod:`._call` and :mod:`._revoke` are functions over an
:class:`~peerbox.trust._exec.ExecHandler`; they name it through the
:class:`RequestHost` protocol here, so that no module of the package imports
:mod:`._exec` back (``_exec`` imports them). :class:`Delivered` is what every
request answered with a signed reply has.
"""

from __future__ import annotations

from collections.abc import Callable
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import Error
from ..hostcalls import CallerQuota, RowScope
from ..policy import Denied, GrantSet, Policy, PolicyCache, PolicyLimits
from ..policy import Request as PolicyRequest
from ..run import Limits
from ..wire import CallRequest, Request, RevokeRequest
from ._handled import Handled
from ._outcome import Outcome
from ._revocations import Revocations

if TYPE_CHECKING:  # a type only: importing it at run time would load wasmtime for a format check
    from ..peer import PeerContext

__all__ = ["Authorize", "Delivered", "RequestHost"]

#: ``authorize(action, path)`` of a run: returns when the host call may go on (for a ``db.*``
#: action: the row scope the policy allows), else raises
#: :class:`~peerbox.hostcalls.HostCallError` (kind ``denied``).
Authorize = Callable[[str, str], RowScope]


class Delivered(Protocol):
    """What every request the handler answers with a signed reply has: the caller's key and the
    envelope as received (the reply names its digest)."""

    @property
    def caller(self) -> bytes: ...

    @property
    def data(self) -> bytes: ...


class RequestHost(Protocol):
    """The parts of an :class:`~peerbox.trust._exec.ExecHandler` a call or a revocation uses (see
    the methods there for what each does and raises)."""

    ctx: PeerContext
    revocations: Revocations
    policy: PolicyCache
    owner_did: str
    clock: Callable[[], float]

    def did_of(self, key: bytes) -> str: ...

    def name_of(self, did: str) -> str | None: ...

    def delivered(self, req: Request | CallRequest | RevokeRequest, now: int) -> Handled | None: ...

    def checked_grants(self, req: Request | CallRequest, now: int, policy: Policy, *,
                       action: str) -> GrantSet | None | Handled: ...

    def rate_check(self, policy: Policy, asked: PolicyRequest, req: Delivered, now: int, *,
                   cap: PolicyLimits | EllipsisType | None = ...) -> Handled | None: ...

    def deny(self, req: Delivered, now: int, denied: Denied) -> Handled: ...

    def unavailable(self, req: Delivered, now: int, exc: Error, start: float) -> Handled: ...

    def failed(self, req: Delivered, now: int, outcome: Outcome, error: dict[str, Any], log: list[str],
               start: float, *, denied_action: str | None = None) -> Handled: ...

    def answer(self, req: Delivered, now: int, value: Any, start: float) -> Handled: ...

    def limits_of(self, cap: PolicyLimits | None, requested: dict[str, Any] | None) -> Limits: ...

    def execute(self, req: Delivered, now: int, *, source: str, filename: str,
                may_import: Callable[[str], bool] | None, params: dict[str, Any], limits: Limits,
                caller: dict[str, str], authorize: Authorize, refused: list[Denied],
                quota: CallerQuota | None,
                unavailable_compile: str | None = None) -> Handled: ...
