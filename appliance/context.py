"""The running appliance: its configuration and lazily opened backends.

One ``Appliance`` per process (web worker, Huey consumer, CLI command). Backends are
opened on first use so a command that needs only the database never loads chdb.
"""

from __future__ import annotations

import functools

from appliance.config import Config
from appliance.db import Database
from appliance.storage.analytics import Analytics, make_analytics
from appliance.storage.objects import make_object_store
from appliance.storage.pubsub import make_pubsub
from appliance.storage.queue import make_huey


class Appliance:
    def __init__(self, config: Config):
        self.config = config

    @functools.cached_property
    def db(self) -> Database:
        return Database(self.config)

    @functools.cached_property
    def huey(self):
        return make_huey(self.config)

    @functools.cached_property
    def tasks(self):
        """The registered Huey tasks by name: ``app.tasks.run_job(job_id)`` enqueues."""
        from appliance.tasks import register_tasks

        return register_tasks(self.huey, self)

    @functools.cached_property
    def pubsub(self):
        return make_pubsub(self.config)

    @functools.cached_property
    def objects(self):
        return make_object_store(self.config)

    @functools.cached_property
    def analytics(self) -> Analytics:
        return make_analytics(self.config)

    def close(self) -> None:
        for name in ("db", "pubsub", "analytics"):
            backend = self.__dict__.get(name)
            if backend is not None:
                backend.close()
