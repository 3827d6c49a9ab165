"""A client-wide request pacer for OpenAI-compatible servers: fixed caps plus a rate learned from 429s.

Optional requests-per-minute and tokens-per-minute caps, and an adaptive rate: after a 429 the
whole client pauses for the server's ``Retry-After`` and then paces requests at the rate the server
was seen to accept, creeping back up while no 429 comes (AIMD). ``clock`` and ``sleep`` are
injectable, so the pacing is tested in virtual time, without waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections import deque
from typing import Any


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if present."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (now if now is not None else time.time()), 0.0)


class AdaptiveRateLimiter:
    """A client-wide pacer: optional fixed caps (rpm, tpm) plus a rate learned from 429s.

    Until 429s show up there is no learned limit (only the caps). When 429s answer a real share of
    the requests sent in the last second (at least ``signal_count`` of them and ``signal_share`` of
    the requests; before any limit is learned, the share's one-sided 99% lower confidence bound
    must reach ``signal_share``, so that a few stray 429s among the first requests are not taken
    for a rate limit), every request pauses for ``Retry-After``. When the pause ends the rate is set
    to ``decrease`` x the rate the server accepted over the ``window`` seconds before the signal
    (requests sent minus those answered 429, over at least one second), and it then grows by
    ``increase`` of itself per second until the next signal (multiplicative probing, so a rate
    learned from a burst recovers in seconds). A 429 for a request sent before the last adjustment
    does not adjust again. An isolated 429 delays only its own request: while no limit is learned
    (the server is not limiting as a whole, so a retry soon most likely succeeds and the run does
    not end waiting) by a jittered backoff from ``stray_backoff`` seconds, doubling with each
    consecutive 429, at most ``Retry-After``; once a limit is learned, by ``Retry-After``.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *, increase: float = 0.1,
                 decrease: float = 0.95, min_rate: float = 0.05, window: float = 2.0, signal_share: float = 0.2,
                 signal_count: int = 3, stray_backoff: float = 0.25, clock=time.monotonic, sleep=asyncio.sleep):
        self.cap = rpm / 60.0 if rpm else None
        self.tpm = tpm
        self.increase, self.decrease, self.min_rate = increase, decrease, min_rate
        self.clock, self.sleep = clock, sleep
        self.base_rate: float | None = None   # learned rate at the last adjustment
        self.adjusted_at = clock()
        self.first_send: float | None = None
        self.pause_until = 0.0
        self.next_send = 0.0
        self.pending: float | None = None      # time of a rate-limit signal waiting for the pause to end
        self.rate_limit_events = 0
        self.last_measured: float | None = None  # the accepted rate measured at the last signal
        self.window, self.signal_share, self.signal_count = window, signal_share, signal_count
        self.stray_backoff = stray_backoff
        self._sends: deque[float] = deque()
        self._limited_sends: deque[float] = deque()
        self._tokens = float(tpm) if tpm else 0.0
        self._tokens_at = clock()

    @property
    def rate(self) -> float | None:
        """The current allowed requests per second (None when unlimited)."""
        learned = None
        if self.base_rate is not None:
            elapsed = max(self.clock() - self.adjusted_at, 0.0)
            learned = self.base_rate * (1.0 + self.increase) ** min(elapsed, 600.0)
        if learned is None:
            return self.cap
        return min(learned, self.cap) if self.cap else learned

    def _adjust(self, now: float) -> None:
        event = self.pending
        self.pending = None
        low = event - self.window
        sent = sum(1 for t in self._sends if low <= t <= event)
        limited = sum(1 for t in self._limited_sends if low <= t <= event)
        span = max(min(self.window, event - (self.first_send or event)), 1.0)
        measured = max(sent - limited, 1) / span
        self.last_measured = measured
        current = self.rate
        new = self.decrease * measured
        if current is not None:
            new = max(new, 0.5 * current)  # one bad estimate must not collapse the rate
        self.base_rate = max(new, self.min_rate)
        self.adjusted_at = now

    def _trim(self, now: float) -> None:
        horizon = now - 3 * self.window
        while self._sends and self._sends[0] < horizon:
            self._sends.popleft()
        while self._limited_sends and self._limited_sends[0] < horizon:
            self._limited_sends.popleft()

    async def acquire(self, tokens: int = 0) -> float:
        """Wait for permission to send one request (of about ``tokens`` tokens); returns the send time."""
        while True:
            now = self.clock()
            if now < self.pause_until:
                await self.sleep(self.pause_until - now)
                continue
            if self.pending is not None:
                self._adjust(now)
            rate = self.rate
            at = now
            if rate:
                at = max(now, self.next_send)
                self.next_send = at + 1.0 / rate
            if self.tpm and tokens:
                at = max(at, self._token_time(tokens, at))
            if at > now:
                await self.sleep(at - now)
                if self.clock() < self.pause_until:
                    continue
            sent = self.clock()
            if self.first_send is None:
                self.first_send = sent
            self._sends.append(sent)
            self._trim(sent)
            return sent

    def _token_time(self, tokens: int, at: float) -> float:
        """Reserve ``tokens`` from the tokens-per-minute bucket; returns when they are available."""
        refill = self.tpm / 60.0
        self._tokens = min(float(self.tpm), self._tokens + (at - self._tokens_at) * refill)
        self._tokens_at = at
        need = min(tokens, self.tpm)
        self._tokens -= need
        if self._tokens >= 0:
            return at
        return at + (-self._tokens) / refill

    def settle_tokens(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the real usage is known."""
        if self.tpm:
            self._tokens += estimated - actual

    def limited_share(self, now: float) -> tuple[float, int]:
        """Share of the requests sent in the last second that were answered 429 (before any limit is
        learned, its 99% lower confidence bound), and how many were."""
        low = now - 1.0
        sent = sum(1 for t in self._sends if t >= low)
        limited = sum(1 for t in self._limited_sends if t >= low)
        sent = max(sent, limited)
        return (_wilson_low(limited, sent) if self.base_rate is None else limited / sent if sent else 1.0), limited

    def on_rate_limited(self, sent_at: float, retry_after: float | None, consecutive: int) -> float:
        """Record a 429 for a request sent at ``sent_at``; returns how long that request itself should wait.

        When 429s answer a real share of the requests sent in the last second (see the class) the
        whole client pauses for ``Retry-After`` and the rate is re-learned; an isolated 429 only makes
        its own request wait, a jittered backoff of at most ``Retry-After``. Requests still in flight
        count as accepted, so the slow successes do not make a few fast 429s look like a flood.
        """
        now = self.clock()
        doubling = 2 ** min(max(consecutive - 1, 0), 10)
        wait = retry_after if retry_after is not None else min(0.5 * doubling, 30.0)
        self._limited_sends.append(sent_at)
        share, count = self.limited_share(now)
        if count < self.signal_count or share < self.signal_share:
            if self.base_rate is None:  # no limit seen yet: a stray 429, retried soon
                return random.uniform(0.0, min(wait, self.stray_backoff * doubling))
            return wait * (1.0 + 0.1 * random.random())
        wait *= 1.0 + 0.1 * random.random()
        self.pause_until = max(self.pause_until, now + wait)
        if sent_at >= self.adjusted_at and self.pending is None:
            self.pending = now
            self.rate_limit_events += 1
        return 0.0


def _wilson_low(successes: int, trials: int, z: float = 2.326) -> float:
    """The Wilson score lower bound of a binomial share (one-sided 99% for the default ``z``)."""
    if trials <= 0:
        return 0.0
    share, z2 = successes / trials, z * z
    centre = share + z2 / (2 * trials)
    margin = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials))
    return max((centre - margin) / (1 + z2 / trials), 0.0)
