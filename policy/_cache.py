"""Reloading: :class:`PolicyCache` re-reads a policy file when it changes.

A peer's policy is edited while the peer serves requests; the edit must
count from the next request on, without a restart. Each :meth:`PolicyCache.get`
costs one ``stat`` (a couple of µs); the file is read and compiled again
only when its ``(mtime_ns, size, inode, ctime_ns)`` differs from the version
in hand, so replacing it with ``mv`` and editing it in place both count.
"""

from __future__ import annotations

import logging
import os
import threading

from ._match import Policy, loads
from ._model import PolicyError
from ._parse import read_policy_file

__all__ = ["PolicyCache"]

_log = logging.getLogger("peerbox.policy")

_Signature = tuple[int, int, int, int]


class PolicyCache:
    """The current :class:`Policy` of one file: ``PolicyCache(path).get()``.

    A file that does not load gives :meth:`Policy.deny_all` (the peer refuses
    everything, telling callers only that its policy could not be loaded) and
    the :class:`PolicyError` (file, line, problem: for the operator's log) in
    :attr:`error` and the policy's ``load_error``; a later fix is picked up the
    same way as any change.
    Thread-safe: concurrent ``get`` calls reload at most once per change.
    A file that does not load is reported to the operator on the
    ``peerbox.policy`` logger at error level (its full path, line and
    problem), once per change of the file or of the problem, never per request.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: str = os.fspath(path)
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._policy: Policy | None = None
        self.error: PolicyError | None = None
        self.loads = 0  # how many times the file was (re)compiled: for tests and stats
        self._reported: tuple[_Signature | None, str] | None = None  # the load error last logged

    def _stat(self) -> _Signature | None:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)

    def get(self) -> Policy:
        """The policy as the file is now: cached while the file is unchanged, else reloaded.

        Never raises: a broken or missing file yields a deny-all policy (see the class docstring).
        """
        sig = self._stat()
        policy = self._policy
        if policy is not None and sig is not None and sig == self._signature:
            return policy
        with self._lock:
            if self._policy is not None and sig is not None and sig == self._signature:
                return self._policy
            return self._reload()

    def _reload(self) -> Policy:
        try:
            text, sig = read_policy_file(self.path)
            policy = loads(text, self.path)
            self.error = None
        except PolicyError as exc:
            self.error = exc
            self._report(exc)
            # the reason reaches remote callers: it says only that the policy does not load (no path,
            # no line of the file); the operator's detail stays in self.error and policy.load_error
            policy = Policy.deny_all(file=self.path, error=exc)
            sig2 = self._stat()
            sig = sig2 if sig2 is not None else (-1, -1, -1, -1)
        self.loads += 1
        self._policy = policy
        self._signature = sig
        return policy

    def _report(self, exc: PolicyError) -> None:
        """Log a load error at error level unless this file version's same error was logged already
        (a missing file is re-read on every request: it is logged once until it changes)."""
        seen = (self._stat(), str(exc))
        if seen == self._reported:
            return
        self._reported = seen
        where = f"{self.path}:{exc.line}" if exc.line else self.path
        _log.error("policy %s does not load, the peer refuses every request until it is fixed: %s",
                   where, exc.problem, extra={"peerbox_fields": {"path": self.path, "line": exc.line,
                                                                 "problem": exc.problem}})
