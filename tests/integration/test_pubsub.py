"""Live pub/sub, in-process and on a real Redis."""

import threading

import pytest

from appliance.storage.pubsub import make_pubsub
from conftest import make_config


@pytest.fixture
def hub(tmp_path, pubsub_values):
    hub = make_pubsub(make_config(tmp_path, **pubsub_values))
    yield hub
    hub.close()


def test_publish_reaches_every_subscriber_of_the_channel(hub):
    with hub.subscribe(["run.1"]) as a, hub.subscribe(["run.1", "run.2"]) as b, hub.subscribe(["run.3"]) as c:
        assert hub.publish("run.1", "line 1") == 2
        hub.publish("run.2", "line 2")
        assert a.get(timeout=2).data == "line 1"
        assert [b.get(timeout=2).data, b.get(timeout=2).data] == ["line 1", "line 2"]
        assert c.get(timeout=0.2) is None


def test_order_and_unicode_kept(hub):
    with hub.subscribe(["logs"]) as sub:
        for i in range(200):
            hub.publish("logs", f"{i} ✓ ünïcødé")
        got = [sub.get(timeout=2).data for _ in range(200)]
    assert got == [f"{i} ✓ ünïcødé" for i in range(200)]


def test_closed_subscription_receives_nothing(hub):
    sub = hub.subscribe(["x"])
    sub.close()
    assert hub.publish("x", "after close") == 0


def test_message_from_another_thread_wakes_a_waiting_subscriber(hub):
    with hub.subscribe(["wake"]) as sub:
        timer = threading.Timer(0.2, hub.publish, args=("wake", "now"))
        timer.start()
        message = sub.get(timeout=5)
        timer.join()
    assert message is not None and (message.channel, message.data) == ("wake", "now")


def test_ping(hub):
    hub.ping()
