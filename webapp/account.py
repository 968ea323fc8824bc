"""account pages (being built for issue 6)."""

from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/user")
