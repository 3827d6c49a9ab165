"""The adaptive rate limiter in virtual time: its injectable clock and sleep replace the wall clock."""

import asyncio
import heapq
import random

import pytest

from cbt_llm.engine.ratelimit import AdaptiveRateLimiter


class VirtualTime:
    """A clock and a sleep for asyncio code: time jumps to the next wake-up once every task is blocked."""

    def __init__(self):
        self.now = 0.0
        self._timers: list = []
        self._order = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(seconds, 0.0), self._order, wake))
        self._order += 1
        await wake

    async def run(self, coroutines) -> None:
        tasks = [asyncio.ensure_future(c) for c in coroutines]
        while not all(t.done() for t in tasks):
            for _ in range(50):  # let every task run until it waits on a timer
                await asyncio.sleep(0)
            if not self._timers:
                break
            at, _, wake = heapq.heappop(self._timers)
            self.now = max(self.now, at)
            wake.set_result(None)
        for task in tasks:
            task.result()


class Server:
    """Accepts at most ``limit`` requests per sliding second; the rest get a 429 at once, with the
    seconds until the window has room as ``retry-after-ms`` (as tests/chat_server.py does)."""

    def __init__(self, limit: int, latency: float = 0.05):
        self.limit, self.latency = limit, latency
        self.answered: list[float] = []
        self.rate_limited = 0

    def retry_after(self, now: float) -> float | None:
        """None when the request is accepted, else how long until it would be."""
        window = [t for t in self.answered[-self.limit:] if t > now - 1.0]
        if len(window) >= self.limit:
            self.rate_limited += 1
            return window[0] + 1.0 - now
        self.answered.append(now)
        return None

    async def request(self, time: "VirtualTime") -> tuple[int, float | None]:
        """(status, Retry-After) for one request."""
        retry_after = self.retry_after(time.now)
        if retry_after is not None:
            return 429, retry_after
        await time.sleep(self.latency)
        return 200, None


class FaultyServer:
    """``slots`` answers at once, ``latency`` seconds each, no rate limit; a share ``p429`` of the
    requests gets a 429 with ``Retry-After`` and ``p500`` a 500, at once (as tests/chat_server.py's
    injected faults)."""

    def __init__(self, slots: int, latency: float, p429: float, p500: float, retry_after: float, seed: int):
        self.slots, self.latency = asyncio.Semaphore(slots), latency
        self.p429, self.p500, self.retry = p429, p500, retry_after
        self.random = random.Random(seed)
        self.answered: list[float] = []
        self.rate_limited = 0

    async def request(self, time: "VirtualTime") -> tuple[int, float | None]:
        roll = self.random.random()
        if roll < self.p429:
            self.rate_limited += 1
            return 429, self.retry
        if roll < self.p429 + self.p500:
            return 500, None
        async with self.slots:
            await time.sleep(self.latency)
        self.answered.append(time.now)
        return 200, None


def simulate(requests: int, concurrency: int, limit: int = 20, latency: float = 0.05, rpm: float | None = None,
             server=None):
    """Send ``requests`` through one limiter from ``concurrency`` workers, as RequestEngine does
    (a 429 waits what the limiter says, a 500 a jittered backoff from 0.5 s)."""
    random.seed(0)  # the limiter jitters its waits
    time = VirtualTime()
    limiter = AdaptiveRateLimiter(rpm, clock=time.clock, sleep=time.sleep)
    server = server or Server(limit, latency)
    todo = list(range(requests))
    first_send = []

    async def worker():
        while todo:
            todo.pop()
            limited = failures = 0
            while True:
                sent = await limiter.acquire()
                first_send.append(sent)
                status, retry_after = await server.request(time)
                if status == 200:
                    break
                if status == 429:
                    limited += 1
                    await time.sleep(limiter.on_rate_limited(sent, retry_after, limited))
                else:
                    failures += 1
                    await time.sleep(random.uniform(0, 0.5 * 2 ** (failures - 1)))

    asyncio.run(time.run(worker() for _ in range(concurrency)))
    span = server.answered[-1] - min(first_send)
    return server, len(server.answered) / span, limiter


def test_without_a_rate_flag_throughput_settles_near_the_server_limit():
    server, throughput, limiter = simulate(requests=600, concurrency=64, limit=20)
    assert len(server.answered) == 600
    assert throughput >= 0.9 * 20, throughput
    assert server.rate_limited <= 0.4 * 600, server.rate_limited  # 0.26 per answer when written
    assert limiter.rate_limit_events >= 1 and limiter.last_measured is not None


def test_an_rpm_cap_below_the_server_limit_means_no_429_at_all():
    server, throughput, limiter = simulate(requests=100, concurrency=16, limit=20, rpm=600)  # 10 per second
    assert server.rate_limited == 0 and limiter.rate_limit_events == 0
    assert throughput == pytest.approx(10, rel=0.05)


def test_a_server_with_room_to_spare_never_slows_the_client():
    server, throughput, limiter = simulate(requests=200, concurrency=8, limit=1000, latency=0.1)
    assert server.rate_limited == 0 and limiter.rate is None
    assert throughput == pytest.approx(80, rel=0.05)  # concurrency / latency


def test_stray_429s_from_a_server_with_room_do_not_slow_the_run():
    # benchmarks/generate_throughput.py's fault scenario: K=32 slots, L=0.2 s, 10% 429 (Retry-After 1 s)
    # and 2% 500, 960 questions from 64 workers. Neither the first requests' stray 429s (no global
    # pause) nor the last ones' Retry-After (no long tail) may cost the run a tenth of its throughput.
    capacity = 32 / 0.2
    shares = []
    for seed in range(5):
        server = FaultyServer(slots=32, latency=0.2, p429=0.10, p500=0.02, retry_after=1.0, seed=seed)
        server, throughput, limiter = simulate(requests=960, concurrency=64, server=server)
        assert len(server.answered) == 960 and server.rate_limited > 50
        shares.append(throughput / capacity)
    assert min(shares) >= 0.85 and sorted(shares)[2] >= 0.90, shares
