"""Git hosting: API tokens, protected branches, merge requests, webhooks in and out.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0003"
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('expires_at', TS, nullable=True),
    sa.Column('last_used_at', TS, nullable=True),
    sa.Column('revoked_at', TS, nullable=True),
    sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name=op.f('ck_api_tokens_known_scope')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_api_tokens_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('inbound_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('forge', sa.String(length=10), nullable=False),
    sa.Column('delivery_id', sa.String(length=100), nullable=False),
    sa.Column('event', sa.String(length=50), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('received_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_inbound_deliveries_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_deliveries')),
    sa.UniqueConstraint('project_id', 'forge', 'delivery_id', name=op.f('uq_inbound_deliveries_project_id_forge_delivery_id'))
    )
    op.create_table('merge_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('source_branch', sa.String(length=255), nullable=False),
    sa.Column('target_branch', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('updated_at', TS, nullable=False),
    sa.CheckConstraint("state IN ('open', 'merged', 'closed')", name=op.f('ck_merge_requests_known_state')),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_merge_requests_author_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_merge_requests_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merge_requests')),
    sa.UniqueConstraint('project_id', 'number', name=op.f('uq_merge_requests_project_id_number'))
    )
    with op.batch_alter_table('merge_requests', schema=None) as batch_op:
        batch_op.create_index('ix_merge_requests_source', ['project_id', 'source_branch', 'state'], unique=False)

    op.create_table('protected_branches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('pattern', sa.String(length=255), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_protected_branches_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_protected_branches')),
    sa.UniqueConstraint('project_id', 'pattern', name=op.f('uq_protected_branches_project_id_pattern'))
    )
    op.create_table('webhooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('events', sa.String(length=100), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_webhooks_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks'))
    )
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhooks_project_id'), ['project_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('response_code', sa.Integer(), nullable=True),
    sa.Column('response_excerpt', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('next_attempt_at', TS, nullable=True),
    sa.Column('finished_at', TS, nullable=True),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f('ck_webhook_deliveries_known_status')),
    sa.ForeignKeyConstraint(['webhook_id'], ['webhooks.id'], name=op.f('fk_webhook_deliveries_webhook_id_webhooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('uuid', name=op.f('uq_webhook_deliveries_uuid'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_webhook_created', ['webhook_id', 'created_at'], unique=False)

    # Plain add_column, not batch mode: batch mode rebuilds the table on SQLite and drops
    # its expression index (uq_projects_org_name_lower).
    op.add_column('projects', sa.Column('merge_request_counter', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('projects', sa.Column('mirror_url', sa.String(length=2000), nullable=False, server_default=''))
    op.add_column('projects', sa.Column('inbound_secret_ciphertext', sa.LargeBinary(), nullable=True))
    # Like GitLab: the default branch of every project starts protected (Maintainers push,
    # nobody force-pushes or deletes it); Maintainers can lift it in the repository settings.
    op.execute("INSERT INTO protected_branches (project_id, pattern, created_at) "
               "SELECT id, default_branch, CURRENT_TIMESTAMP FROM projects")



def downgrade() -> None:
    for column in ("inbound_secret_ciphertext", "mirror_url", "merge_request_counter"):
        op.execute(f"ALTER TABLE projects DROP COLUMN {column}")  # SQLite >= 3.35 and PostgreSQL

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_webhook_created')

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhooks_project_id'))

    op.drop_table('webhooks')
    op.drop_table('protected_branches')
    with op.batch_alter_table('merge_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_merge_requests_source')

    op.drop_table('merge_requests')
    op.drop_table('inbound_deliveries')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
