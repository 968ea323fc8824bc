"""gunicorn settings, derived from the appliance configuration (``prts web`` passes this file)."""

from prometheus_client import multiprocess

from appliance.config import load
from appliance.logs import formatter

_config = load()

bind = [_config.web.listen]
workers = _config.web.workers
threads = _config.web.threads
worker_class = "gthread"
graceful_timeout = 20
timeout = 60
# Headers name the client for rate limiting only when a proxy we trust set them: none by default.
forwarded_allow_ips = ""
accesslog = "-"
# gunicorn 23+ opens a control socket in $HOME by default; two appliances on one machine
# would fight over it, and nothing here uses it.
control_socket_disable = True
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"prts": {"()": lambda: formatter(_config.log.format)}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "prts", "stream": "ext://sys.stderr"}},
    "root": {"level": _config.log.level.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": _config.log.level.upper(), "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}


def child_exit(_server, worker) -> None:
    # Drop a dead worker's live gauges from the merged /metrics.
    multiprocess.mark_process_dead(worker.pid)
