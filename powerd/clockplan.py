"""When to send each agent a clock request: per-agent interval, a global rate, backoff.

The daemon learns an agent's clock offset from request/reply exchanges. Every agent whose status
is "online" gets one request per ``interval_s`` (with jitter, so thousands of agents do not fire
in step); all of them together never more than ``rate_max_hz`` requests a second (a token
bucket: past that, due requests wait). An agent that does not answer is backed off exponentially
(a couple of lost replies are forgiven), up to ``backoff_max_s``, so ids that announce "online"
and never answer cost almost nothing after a minute. An answer resets its interval. An agent
that answered but is not measured yet (fewer than ``WARMUP_ANSWERS`` answers: its data is held
until then) is asked again at once, ahead of the agents already measured, within the same rate.

Pure scheduling (a heap and a dict; no I/O); the MQTT link asks it what is due.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FORGIVEN = 2
BACKOFF_MAX_S = 300.0
JITTER = 0.1
BURST_S = 0.1


# An agent's first exchanges: until this many were answered the daemon cannot place its data
# (powerd.daemon.MIN_EXCHANGES) and holds it, to be released later at a cost; so an agent that
# answers but is not measured yet is asked again before agents already measured (issue 16).
WARMUP_ANSWERS = 3


@dataclass
class _Agent:
    due_s: float
    unanswered: int = 0
    answers: int = 0
    warm: bool = False  # answered, not yet WARMUP_ANSWERS times: in the warm-up queue


@dataclass
class ClockPlan:
    interval_s: float = 1.0
    rate_max_hz: float = 200.0
    backoff_max_s: float = BACKOFF_MAX_S
    clock_s: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    _agents: dict[str, _Agent] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)
    # agents that answered but are not measured yet: served before ``_heap`` (same tokens)
    _warm: list[tuple[float, str]] = field(default_factory=list)
    _tokens: float = 0.0
    _tokens_at_s: float | None = None
    sent: int = 0
    deferred: int = 0

    def __len__(self) -> int:
        return len(self._agents)

    def online(self, agent: str) -> None:
        """An agent announced itself online: schedule it (at once, jittered) if it is new."""
        if agent in self._agents:
            return
        due = self.clock_s() + self.rng.uniform(0, JITTER * self.interval_s)
        self._agents[agent] = _Agent(due)
        heapq.heappush(self._heap, (due, agent))

    def offline(self, agent: str) -> None:
        """Stop asking an agent (its status is no longer online)."""
        self._agents.pop(agent, None)

    def answered(self, agent: str) -> None:
        """A matching reply came: back to the normal interval from the next request on. An
        agent with fewer than WARMUP_ANSWERS answers is asked again at once, ahead of the
        agents already measured (within the same global rate)."""
        state = self._agents.get(agent)
        if state is None:
            return
        state.unanswered = 0
        state.answers += 1
        if state.answers < WARMUP_ANSWERS:
            state.warm = True
            state.due_s = self.clock_s()
            heapq.heappush(self._warm, (state.due_s, agent))
        elif state.warm:
            state.warm = False
            state.due_s = self.clock_s() + self.interval_s * self.rng.uniform(1 - JITTER, 1)
            heapq.heappush(self._heap, (state.due_s, agent))

    def _interval_s(self, state: _Agent) -> float:
        excess = max(0, state.unanswered - FORGIVEN)
        base = self.interval_s * (2.0 ** min(excess, 30))
        return float(min(base, max(self.interval_s, self.backoff_max_s)))

    def _refill(self, now_s: float) -> None:
        burst = max(1.0, self.rate_max_hz * BURST_S)
        if self._tokens_at_s is None:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + (now_s - self._tokens_at_s) * self.rate_max_hz)
        self._tokens_at_s = now_s

    def take(self) -> list[str]:
        """The agents to send a request to now (each is rescheduled): those warming up first."""
        now = self.clock_s()
        self._refill(now)
        out: list[str] = []
        for heap, warm in ((self._warm, True), (self._heap, False)):
            while heap and heap[0][0] <= now:
                due, agent = heap[0]
                state = self._agents.get(agent)
                if state is None or state.due_s != due or state.warm != warm:
                    heapq.heappop(heap)  # offline, or a stale entry
                    continue
                if self._tokens < 1.0:
                    self.deferred += 1
                    break
                heapq.heappop(heap)
                self._tokens -= 1.0
                state.unanswered += 1
                jitter = self.rng.uniform(1 - JITTER, 1 + JITTER)
                state.due_s = now + self._interval_s(state) * jitter
                heapq.heappush(heap, (state.due_s, agent))
                out.append(agent)
        self.sent += len(out)
        return out

    def next_in_s(self) -> float:
        """Seconds until something may be due (0 if now)."""
        firsts = [h[0][0] for h in (self._warm, self._heap) if h]
        if not firsts:
            return self.interval_s
        wait = min(firsts) - self.clock_s()
        if self._tokens < 1.0:
            wait = max(wait, (1.0 - self._tokens) / self.rate_max_hz)
        return max(0.0, wait)
