"""``prts up`` end to end: first start, sign-in with the printed password, supervision, clean stop."""

import os
import signal
import time
import urllib.error

import pytest

from live import Browserless, LiveAppliance


@pytest.fixture
def live(tmp_path):
    appliance = LiveAppliance(tmp_path / "data")
    yield appliance
    appliance.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_first_start_prints_a_working_one_time_password_and_stops_cleanly(live):
    live.start()
    assert live.admin_password and len(live.admin_password) == 20
    assert "Seeded the demo project demo/hello-prts." in live.log

    client = Browserless(live.url)
    response = client.post_form("/login", {"username": "admin", "password": live.admin_password}, token_from="/login")
    assert response.url.endswith("/user/password")  # the one-time password must be replaced
    response = client.post_form("/user/password", {"current_password": live.admin_password,
                                                    "new_password": "my own strong passphrase"},
                                token_from="/user/password")
    assert response.url == live.url + "/"
    assert "hello-prts" in response.read().decode()

    children = live.children()
    assert len(children) == 2
    assert live.stop(signal.SIGTERM) == 0
    assert not any(_alive(pid) for pid in children)
    assert "stopped web" in live.log and "stopped worker" in live.log


def test_second_start_keeps_data_and_prints_no_password(live):
    live.start()
    first_password = live.admin_password
    assert live.stop(signal.SIGINT) == 0  # Ctrl-C
    live.admin_password = None
    live.start()
    assert live.admin_password is None and "First start" not in live.log
    client = Browserless(live.url)
    response = client.post_form("/login", {"username": "admin", "password": first_password}, token_from="/login")
    assert response.url.endswith("/user/password")


def test_a_crashed_worker_is_restarted(live):
    live.start()
    worker = next(pid for pid in live.children() if "worker" in open(f"/proc/{pid}/cmdline").read())
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = [p for p in live.children() if p != worker and "worker" in open(f"/proc/{p}/cmdline").read()]
        if workers:
            break
        time.sleep(0.2)
    assert workers, live.log
    assert "worker exited with code -9; restarting" in live.log
    with Browserless(live.url).get("/healthz") as response:
        assert response.status == 200


def test_readyz_and_metrics_over_http(live):
    live.start()
    client = Browserless(live.url)
    with client.get("/readyz") as response:
        assert response.status == 200
    client.get("/login").read()
    text = client.get("/metrics").read().decode()
    # Merged across gunicorn workers (multiprocess mode).
    assert 'prts_http_requests_total{endpoint="auth.login",method="GET",status="200"}' in text


def test_port_in_use_fails_fast(tmp_path):
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        live = LiveAppliance(tmp_path / "data", PRTS_WEB_LISTEN=f"127.0.0.1:{blocker.getsockname()[1]}")
        with pytest.raises(RuntimeError, match="exited with 1"):
            live.start(timeout=30)
    assert f"cannot listen on {live.env['PRTS_WEB_LISTEN']}" in live.log
