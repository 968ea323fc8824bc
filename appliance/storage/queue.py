"""The task queue: Huey on SQLite (embedded) or on Redis.

Huey does not acknowledge tasks (a task whose worker is SIGKILLed is lost), so the
database, not the queue, owns the state of anything that must survive; tasks take ids.
"""

from __future__ import annotations

from huey import Huey, RedisHuey, SqliteHuey

from appliance.config import Config

QUEUE_NAME = "prts"


def make_huey(config: Config, *, immediate: bool = False) -> Huey:
    if config.queue.backend == "redis":
        return RedisHuey(QUEUE_NAME, url=config.queue.url, immediate=immediate)
    config.data_path.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(config.queue_path), immediate=immediate)


def queue_address(config: Config) -> str:
    if config.queue.backend == "redis":
        return _redis_address(config.queue.url)
    return f"sqlite:{config.queue_path}"


def _redis_address(url: str) -> str:
    from redis.connection import parse_url

    parts = parse_url(url)
    return f"redis://{parts.get('host', 'localhost')}:{parts.get('port', 6379)}"


def ping_queue(huey: Huey) -> None:
    """Raise when the queue's storage cannot be reached (used by /readyz and start-up)."""
    huey.storage.queue_size()
