"""sso pages (being built for issue 6)."""

from flask import Blueprint

bp = Blueprint("sso", __name__, url_prefix="/login")
