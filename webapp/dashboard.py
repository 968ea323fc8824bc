from flask import Blueprint, current_app, render_template
from flask_login import current_user, login_required

from appliance.accounts import policy

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@login_required
def index():
    with current_app.extensions["prts"].db.session() as s:
        projects = policy.visible_projects(s, current_user)
        can_create = current_user.is_admin or bool(policy.organisations_for_new_project(s, current_user))
    return render_template("dashboard/index.html", projects=projects, can_create=can_create)
