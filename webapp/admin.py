"""admin pages (being built for issue 6)."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
