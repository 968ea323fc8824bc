"""The SQLAlchemy models, one per file; importing this package registers them all."""

from appliance.models.base import Base
from appliance.models.login_attempt import LoginAttempt
from appliance.models.membership import Membership, Role, TeamMember
from appliance.models.organisation import Organisation
from appliance.models.project import Project
from appliance.models.team import Team
from appliance.models.user import User

__all__ = ["Base", "LoginAttempt", "Membership", "Organisation", "Project", "Role", "Team", "TeamMember", "User"]
