"""Sign-in throttling: failed sign-ins counted per name and per client address.

A password is guessed one try at a time, and each try costs the server a
scrypt hash (~100 ms of CPU). So after ``sign_in_max_failures`` failures for
one name, or from one address, within ``sign_in_window_s``, further tries are
refused (429 with ``Retry-After``) before any hash is computed, and no more
than ``sign_in_hash_slots`` hashes run at once in a process: a burst beyond
that is refused at once instead of queueing web threads behind the CPU.

An attempt is *reserved* (counted) before its hash and refused if that count
goes past the limit, so concurrent guesses cannot all slip past a check made
before any of them had failed: whatever the number of threads and processes,
at most ``sign_in_max_failures`` passwords are checked per name and address
within a window. A reservation that is refused, or whose hash finds no slot,
is taken back; a wrong password leaves it as the failure.

The counters live in Redis so every web process sees the same ones; while
Redis cannot be reached each process counts on its own (in memory), which is
weaker (an attacker spread over N processes gets N times the tries) but never
unthrottled.

A successful sign-in clears its *name*'s counter (the person got it right)
and takes back its reservation on the address, but does not clear the
address's failures: otherwise an attacker who owns one account could sign
in with it between guesses at other people's passwords and never be slowed.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from jobsys.context import Context
from jobsys.errors import Unauthenticated

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "jobsys:sign-in-failures:"
#: Past this many counters the in-memory fallback forgets the expired ones (and,
#: if that is not enough, all of them): memory stays bounded while Redis is down.
MAX_MEMORY_KEYS = 10_000
#: How long a sign-in waits for a free hash slot before it is refused.
SLOT_WAIT_S = 0.2

#: Count one attempt on each key (a new key's window starts now); if any key is
#: then past ARGV[1], take the attempt back on every key and answer the longest
#: wait among those past it, else 0. One script, so the count and the undo are
#: atomic across processes.
_RESERVE = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[2]) end
end
local wait = 0
for i, key in ipairs(KEYS) do
  if counts[i] > tonumber(ARGV[1]) then
    local left = redis.call('TTL', key)
    if left > wait then wait = left end
  end
end
if wait > 0 then
  for _, key in ipairs(KEYS) do redis.call('DECR', key) end
end
return wait
"""
#: Take back one attempt on each key that still exists (one that expired
#: meanwhile is left gone, not made -1 and without a window).
_RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('DECR', key) end
end
return 0
"""


class SignInThrottled(Unauthenticated):
    """Raised when a name or address failed to sign in too often lately, or too many
    passwords are being checked at once; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after_s": self.retry_after_s}


class SignInThrottle:
    """The failure counters and hash slots of one process (one per Context)."""

    def __init__(
        self,
        client: redis.Redis | None,
        *,
        max_failures: int = 5,
        window_s: int = 15 * 60,
        hash_slots: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._slots = threading.BoundedSemaphore(max(1, hash_slots))
        self._memory: dict[str, tuple[int, float]] = {}  # key -> (failures, window end)
        self._lock = threading.Lock()

    def check(self, name: str, address: str) -> None:
        """Raise SignInThrottled if the name or the address is over its limit."""
        keys = _keys(name, address)
        if not keys:
            return
        blocked = [left for count, left in self._counts(keys) if count >= self.max_failures]
        if blocked:
            wait = max(blocked)
            raise SignInThrottled(
                f"too many failed sign-ins for this name or from this address; "
                f"try again in {_minutes(wait)} (or ask an admin to set a new password)",
                wait,
            )

    def reserve(self, name: str, address: str, *, limit: int | None = None) -> None:
        """Count an attempt for the name and the address before its hash is computed;
        SignInThrottled (and nothing counted) if that takes either past the limit.

        The attempt stays counted as a failure unless ``release``d or ``succeeded``.
        """
        keys = _keys(name, address)
        if keys:
            self._reserve(keys, self.max_failures if limit is None else limit)

    def release(self, name: str, address: str) -> None:
        """Take back a reservation whose password was never checked (no hash slot)."""
        keys = _keys(name, address)
        if keys:
            self._release(keys)

    def reserve_token(self, key_id: str, *, limit: int) -> None:
        """``reserve`` for a token's key id: its secret failed ``limit`` times lately."""
        key = f"{KEY_PREFIX}token:{key_id[:32]}"
        try:
            self._reserve([key], limit)
        except SignInThrottled as exc:
            raise SignInThrottled(
                f"too many wrong secrets for token {key_id[:32]} lately; try again in "
                f"{_minutes(exc.retry_after_s)} (a token this web process has accepted "
                "before still works)",
                exc.retry_after_s,
            ) from None

    def release_token(self, key_id: str) -> None:
        """The secret was right (or never checked): take its reservation back."""
        self._release([f"{KEY_PREFIX}token:{key_id[:32]}"])

    def _reserve(self, keys: list[str], limit: int) -> None:
        wait = 0
        if self.client is not None:
            try:
                wait = int(self.client.eval(_RESERVE, len(keys), *keys, limit, self.window_s))
            except (RedisError, OSError) as exc:
                log.warning("sign-in attempts counted in this process only: %s", exc)
            else:
                self._refuse_if(wait)
                return
        now = self.clock()
        with self._lock:
            if len(self._memory) >= MAX_MEMORY_KEYS:
                self._forget_expired(now)
            counted = []
            for key in keys:
                count, ends = self._memory.get(key, (0, now + self.window_s))
                if ends <= now:
                    count, ends = 0, now + self.window_s
                counted.append((key, count + 1, ends))
            waits = [math.ceil(ends - now) for _, count, ends in counted if count > limit]
            if not waits:
                for key, count, ends in counted:
                    self._memory[key] = (count, ends)
            wait = max(waits, default=0)
        self._refuse_if(wait)

    def _release(self, keys: list[str]) -> None:
        if self.client is not None:
            try:
                self.client.eval(_RELEASE, len(keys), *keys)
                return
            except (RedisError, OSError) as exc:
                log.warning("sign-in attempt taken back in this process only: %s", exc)
        with self._lock:
            for key in keys:
                found = self._memory.get(key)
                if found is not None:
                    self._memory[key] = (max(0, found[0] - 1), found[1])

    def _refuse_if(self, wait: int) -> None:
        if wait > 0:
            raise SignInThrottled(
                f"too many failed sign-ins for this name or from this address; "
                f"try again in {_minutes(wait)} (or ask an admin to set a new password)",
                wait,
            )

    def failed(self, name: str, address: str) -> None:
        keys = _keys(name, address)
        if not keys:
            return
        if self.client is not None:
            try:
                pipe = self.client.pipeline(transaction=False)
                for key in keys:
                    # The window starts with the first failure; SET NX leaves it be after.
                    pipe.set(key, 0, ex=self.window_s, nx=True)
                    pipe.incr(key)
                pipe.execute()
                return
            except (RedisError, OSError) as exc:
                log.warning("sign-in failures counted in this process only: %s", exc)
        now = self.clock()
        with self._lock:
            if len(self._memory) >= MAX_MEMORY_KEYS:
                self._forget_expired(now)
            for key in keys:
                count, ends = self._memory.get(key, (0, now + self.window_s))
                if ends <= now:
                    count, ends = 0, now + self.window_s
                self._memory[key] = (count + 1, ends)

    def succeeded(self, name: str, address: str = "") -> None:
        """A right password: clear the name's failures, and take back the attempt
        ``reserve`` counted on the address (whose failures stay)."""
        if address:
            self.release("", address)
        keys = _keys(name, "")
        if not keys:
            return
        if self.client is not None:
            try:
                self.client.delete(*keys)
            except (RedisError, OSError) as exc:
                log.warning("sign-in failures not cleared in Redis: %s", exc)
        with self._lock:
            for key in keys:
                self._memory.pop(key, None)

    @contextmanager
    def hashing(self, what: str = "sign-ins") -> Iterator[None]:
        """Hold one of the process's hash slots while a password (or token secret)
        hash is computed; ``what`` names them in the refusal."""
        if not self._slots.acquire(timeout=SLOT_WAIT_S):
            raise SignInThrottled(
                f"too many {what} are being checked at once; try again in a second", 1
            )
        try:
            yield
        finally:
            self._slots.release()

    def _counts(self, keys: list[str]) -> list[tuple[int, int]]:
        """(failures, seconds until the window ends) for each key."""
        if self.client is not None:
            try:
                pipe = self.client.pipeline(transaction=False)
                for key in keys:
                    pipe.get(key)
                    pipe.ttl(key)
                found = pipe.execute()
                return [
                    (int(found[i] or 0), found[i + 1] if found[i + 1] > 0 else self.window_s)
                    for i in range(0, len(found), 2)
                ]
            except (RedisError, OSError) as exc:
                log.warning("sign-in failures read from this process only: %s", exc)
        now = self.clock()
        with self._lock:
            counts = []
            for key in keys:
                count, ends = self._memory.get(key, (0, now))
                counts.append((count, math.ceil(ends - now)) if ends > now else (0, 0))
            return counts

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, (_, ends) in self._memory.items() if ends <= now]:
            del self._memory[key]
        if len(self._memory) >= MAX_MEMORY_KEYS:
            self._memory.clear()


def _keys(name: str, address: str) -> list[str]:
    """Counter keys; a name is hashed (it is whatever was typed, of any length)
    and compared without case, so ``Olga`` and ``olga`` share a counter."""
    keys = []
    if name:
        digest = hashlib.sha256(name.strip().casefold().encode()).hexdigest()[:32]
        keys.append(f"{KEY_PREFIX}name:{digest}")
    if address:
        keys.append(f"{KEY_PREFIX}address:{address[:64]}")
    return keys


def _minutes(seconds: int) -> str:
    return f"{seconds} s" if seconds < 90 else f"{math.ceil(seconds / 60)} min"


_THROTTLES: dict[int, SignInThrottle] = {}
_THROTTLES_LOCK = threading.Lock()


def sign_in_throttle(ctx: Context) -> SignInThrottle:
    """The throttle of this Context, made on first use.

    Its Redis is the event bus's client (the one Redis connection a Context
    has); a Context without one (unit tests, one-off scripts) counts in memory.
    Contexts are unhashable (their collaborators are mutable), so the throttle
    is found by the Context's id and dropped when the Context is collected.
    """
    key = id(ctx)
    with _THROTTLES_LOCK:
        found = _THROTTLES.get(key)
        if found is None:
            settings = ctx.settings
            found = SignInThrottle(
                getattr(ctx.events, "client", None),
                max_failures=settings.sign_in_max_failures,
                window_s=settings.sign_in_window_s,
                hash_slots=settings.sign_in_hash_slots,
            )
            _THROTTLES[key] = found
            weakref.finalize(ctx, _THROTTLES.pop, key, None)
        return found
