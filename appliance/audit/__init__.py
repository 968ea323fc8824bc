"""The audit trail: who did what to what, from where, when, and how it went.

``record`` is called inside the transaction of the action it describes, so an action and
its event commit or roll back together. The rows are an outbox: a periodic task ships them
to the analytics store (see ``appliance.audit.shipping``); ``appliance.audit.chain``
verifies the hash chain.
"""

from appliance.audit.trail import GENESIS_HASH, SYSTEM, Origin, Outcome, event_hash, record, url_without_secrets

__all__ = ["GENESIS_HASH", "SYSTEM", "Origin", "Outcome", "event_hash", "record", "url_without_secrets"]
