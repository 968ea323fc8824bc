"""audit pages (being built for issue 6)."""

from flask import Blueprint

bp = Blueprint("audit", __name__, url_prefix="/audit")
