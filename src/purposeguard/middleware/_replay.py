"""A bounded memory of the nonces of accepted claims, so that each signed claim is used once."""

from __future__ import annotations

import heapq
import threading
from typing import Literal

from ..exceptions import ConfigurationError

__all__ = ["ReplayCache"]


class ReplayCache:
    """The nonces seen in claims that are still within their lifetime, at most ``capacity``.

    A nonce is remembered until its claim expires (after which the claim is refused as expired
    anyway), so the memory holds at most the claims accepted in one ``max_age``. When it is full
    of live nonces a new claim is refused (``replay_cache_full``, 503), never let through
    unchecked: size ``capacity`` above the claim-bearing requests a process accepts per
    ``max_age``. Only claims whose signature verified reach it, so filling it takes the key.

    One cache serves one process. Replicas behind a load balancer each keep their own, so a claim
    replayed to another replica within its lifetime is not caught here; to catch that, subclass
    and make :meth:`add` ask a shared store (an atomic "set if absent, with expiry").
    Thread-safe.
    """

    __slots__ = ("_expires", "_heap", "_lock", "capacity")

    def __init__(self, capacity: int = 100_000) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigurationError("ReplayCache(capacity=...) takes a positive number of nonces")
        self.capacity = capacity
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expires)

    def add(self, nonce: str, expires: float, now: float) -> Literal["new", "replayed", "full"]:
        """Remember ``nonce`` until ``expires`` (unix time): ``"new"`` the first time,
        ``"replayed"`` if it is remembered already, ``"full"`` if there is no room for it."""
        with self._lock:
            heap, table = self._heap, self._expires
            while heap and heap[0][0] < now:  # a claim at exactly its expiry is still valid
                _, old = heapq.heappop(heap)
                if table.get(old, now) < now:
                    del table[old]
            if nonce in table:
                return "replayed"
            if len(table) >= self.capacity:
                return "full"
            table[nonce] = expires
            heapq.heappush(heap, (expires, nonce))
            return "new"
