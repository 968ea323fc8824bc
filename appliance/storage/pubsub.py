"""Live pub/sub for log lines and status changes: in-process (embedded) or Redis.

Messages are best-effort and never stored: viewers read what is stored first and then
follow live messages, so a missed message costs latency, never data.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Protocol

import redis

from appliance.config import Config


@dataclass(frozen=True)
class Message:
    channel: str
    data: str


class Subscription(Protocol):
    def get(self, timeout: float | None = None) -> Message | None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Subscription": ...
    def __exit__(self, *exc) -> None: ...


class _ClosingMixin:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MemoryPubSub:
    """Fan-out within one process; each subscription has its own bounded queue."""

    MAX_PENDING = 10_000  # a stalled subscriber drops messages instead of growing without bound

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[queue.Queue]] = defaultdict(set)

    @property
    def address(self) -> str:
        return "memory"

    def publish(self, channel: str, data: str) -> int:
        with self._lock:
            targets = list(self._subscribers.get(channel, ()))
        delivered = 0
        for q in targets:
            try:
                q.put_nowait(Message(channel, data))
                delivered += 1
            except queue.Full:
                pass
        return delivered

    def subscribe(self, channels: Iterable[str]) -> "MemorySubscription":
        return MemorySubscription(self, list(channels))

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


class MemorySubscription(_ClosingMixin):
    def __init__(self, hub: MemoryPubSub, channels: list[str]):
        self._hub = hub
        self._channels = channels
        self._queue: queue.Queue = queue.Queue(hub.MAX_PENDING)
        with hub._lock:
            for channel in channels:
                hub._subscribers[channel].add(self._queue)

    def get(self, timeout: float | None = None) -> Message | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        with self._hub._lock:
            for channel in self._channels:
                self._hub._subscribers[channel].discard(self._queue)


class RedisPubSub:
    def __init__(self, url: str):
        self._client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        kw = self._client.connection_pool.connection_kwargs
        self.address = f"redis://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"

    def publish(self, channel: str, data: str) -> int:
        return int(self._client.publish(channel, data))

    def subscribe(self, channels: Iterable[str]) -> "RedisSubscription":
        return RedisSubscription(self._client, list(channels))

    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()


class RedisSubscription(_ClosingMixin):
    CONFIRM_TIMEOUT = 5.0

    def __init__(self, client: redis.Redis, channels: list[str]):
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(*channels)
        # SUBSCRIBE is asynchronous on the wire: wait for the server's confirmations so a
        # message published right after subscribe() returns is not missed.
        pending = set(channels)
        self._early: list[Message] = []
        deadline = time.monotonic() + self.CONFIRM_TIMEOUT
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._pubsub.close()
                raise TimeoutError(f"Redis did not confirm the subscription to {sorted(pending)}")
            raw = self._pubsub.get_message(timeout=remaining)
            if raw is None:
                continue
            if raw["type"] == "subscribe":
                pending.discard(raw["channel"])
            elif raw["type"] == "message":
                self._early.append(Message(raw["channel"], raw["data"]))

    def get(self, timeout: float | None = None) -> Message | None:
        if self._early:
            return self._early.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            raw = self._pubsub.get_message(timeout=3600 if remaining is None else remaining)
            if raw is not None and raw["type"] == "message":
                return Message(raw["channel"], raw["data"])
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        self._pubsub.close()


def make_pubsub(config: Config) -> MemoryPubSub | RedisPubSub:
    if config.pubsub.backend == "redis":
        return RedisPubSub(config.pubsub.url)
    return MemoryPubSub()
