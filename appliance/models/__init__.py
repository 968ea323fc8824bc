"""The SQLAlchemy models, one per file; importing this package registers them all."""

from appliance.models.api_token import ApiToken
from appliance.models.artifact import Artifact
from appliance.models.audit_event import AuditChainHead, AuditEvent
from appliance.models.base import Base
from appliance.models.external_identity import ExternalIdentity
from appliance.models.inbound_delivery import InboundDelivery
from appliance.models.log_chunk import LogChunk
from appliance.models.login_attempt import LoginAttempt
from appliance.models.membership import Membership, Role, TeamMember
from appliance.models.merge_request import MergeRequest
from appliance.models.organisation import Organisation
from appliance.models.pipeline_job import PipelineJob, PipelineJobNeed
from appliance.models.pipeline_run import PipelineRun, Status
from appliance.models.pipeline_schedule import PipelineSchedule
from appliance.models.pipeline_step import PipelineStep
from appliance.models.project import Project
from appliance.models.project_variable import ProjectVariable
from appliance.models.protected_branch import ProtectedBranch
from appliance.models.team import Team
from appliance.models.user import User
from appliance.models.user_session import UserSession
from appliance.models.webhook import Webhook, WebhookDelivery

__all__ = [
    "ApiToken", "Artifact", "AuditChainHead", "AuditEvent", "Base", "ExternalIdentity", "InboundDelivery", "LogChunk", "LoginAttempt", "Membership", "MergeRequest",
    "Organisation", "PipelineJob", "PipelineJobNeed", "PipelineRun", "PipelineSchedule", "PipelineStep", "Project",
    "ProjectVariable", "ProtectedBranch", "Role", "Status", "Team", "TeamMember", "User", "UserSession", "Webhook",
    "WebhookDelivery",
]
