"""Pipelines: runs, jobs and their DAG, steps, log chunks, artifacts, variables, schedules.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = '0001'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('pipeline_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('cron', sa.String(length=100), nullable=False),
    sa.Column('ref', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('next_run_at', TS, nullable=False),
    sa.Column('last_run_at', TS, nullable=True),
    sa.Column('last_run_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.CheckConstraint("source IN ('pipeline', 'user')", name=op.f('ck_pipeline_schedules_source')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_pipeline_schedules_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_schedules'))
    )
    with op.batch_alter_table('pipeline_schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pipeline_schedules_next_run_at'), ['next_run_at'], unique=False)

    op.create_table('project_variables',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('is_secret', sa.Boolean(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('updated_at', TS, nullable=False),
    sa.CheckConstraint("(is_secret AND ciphertext IS NOT NULL AND value = '') OR (NOT is_secret AND ciphertext IS NULL)", name=op.f('ck_project_variables_secret_has_no_plaintext')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_variables_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project_variables')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_project_variables_project_id_name'))
    )
    op.create_table('pipeline_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('ref', sa.String(length=255), nullable=False),
    sa.Column('commit_sha', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('triggered_by_id', sa.Integer(), nullable=True),
    sa.Column('schedule_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('started_at', TS, nullable=True),
    sa.Column('finished_at', TS, nullable=True),
    sa.CheckConstraint("status IN ('pending', 'queued', 'running', 'success', 'failed', 'canceled', 'skipped')", name=op.f('ck_pipeline_runs_status')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_pipeline_runs_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['schedule_id'], ['pipeline_schedules.id'], name=op.f('fk_pipeline_runs_schedule_id_pipeline_schedules'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['triggered_by_id'], ['users.id'], name=op.f('fk_pipeline_runs_triggered_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_runs')),
    sa.UniqueConstraint('project_id', 'number', name=op.f('uq_pipeline_runs_project_id_number'))
    )
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.create_index('ix_pipeline_runs_project_ref', ['project_id', 'ref'], unique=False)

    op.create_table('pipeline_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('stage', sa.String(length=100), nullable=False),
    sa.Column('stage_index', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('skip_reason', sa.Text(), nullable=False),
    sa.Column('skipped_by_condition', sa.Boolean(), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=False),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('environment', sa.String(length=100), nullable=False),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('allow_failure', sa.Boolean(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('lost_count', sa.Integer(), nullable=False),
    sa.Column('unmet_needs', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=False),
    sa.Column('lease_expires_at', TS, nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('queued_at', TS, nullable=True),
    sa.Column('started_at', TS, nullable=True),
    sa.Column('finished_at', TS, nullable=True),
    sa.Column('log_bytes', sa.BigInteger(), nullable=False),
    sa.Column('log_lines', sa.BigInteger(), nullable=False),
    sa.Column('log_truncated', sa.Boolean(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'queued', 'running', 'success', 'failed', 'canceled', 'skipped')", name=op.f('ck_pipeline_jobs_status')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_pipeline_jobs_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['pipeline_runs.id'], name=op.f('fk_pipeline_jobs_run_id_pipeline_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_jobs')),
    sa.UniqueConstraint('run_id', 'key', name=op.f('uq_pipeline_jobs_run_id_key'))
    )
    with op.batch_alter_table('pipeline_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_pipeline_jobs_status', ['status', 'project_id'], unique=False)

    op.create_table('artifacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('object_key', sa.String(length=300), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('file_count', sa.Integer(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('expires_at', TS, nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['pipeline_jobs.id'], name=op.f('fk_artifacts_job_id_pipeline_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['pipeline_runs.id'], name=op.f('fk_artifacts_run_id_pipeline_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifacts')),
    sa.UniqueConstraint('job_id', 'name', name=op.f('uq_artifacts_job_id_name'))
    )
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_artifacts_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_artifacts_run_id'), ['run_id'], unique=False)

    op.create_table('log_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('first_line', sa.BigInteger(), nullable=False),
    sa.Column('line_count', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('raw_end', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('object_key', sa.String(length=300), nullable=False),
    sa.Column('styles', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['pipeline_jobs.id'], name=op.f('fk_log_chunks_job_id_pipeline_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log_chunks')),
    sa.UniqueConstraint('job_id', 'attempt', 'seq', name=op.f('uq_log_chunks_job_id_attempt_seq'))
    )
    op.create_table('pipeline_job_needs',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('needs_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['pipeline_jobs.id'], name=op.f('fk_pipeline_job_needs_job_id_pipeline_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['needs_id'], ['pipeline_jobs.id'], name=op.f('fk_pipeline_job_needs_needs_id_pipeline_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'needs_id', name=op.f('pk_pipeline_job_needs'))
    )
    with op.batch_alter_table('pipeline_job_needs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pipeline_job_needs_needs_id'), ['needs_id'], unique=False)

    op.create_table('pipeline_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('started_at', TS, nullable=True),
    sa.Column('finished_at', TS, nullable=True),
    sa.CheckConstraint("status IN ('pending', 'queued', 'running', 'success', 'failed', 'canceled', 'skipped')", name=op.f('ck_pipeline_steps_status')),
    sa.ForeignKeyConstraint(['job_id'], ['pipeline_jobs.id'], name=op.f('fk_pipeline_steps_job_id_pipeline_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_steps')),
    sa.UniqueConstraint('job_id', 'index', name=op.f('uq_pipeline_steps_job_id_index'))
    )
    # Plain ADD COLUMN, not batch mode: a batch copy of `projects` on SQLite would drop the
    # expression index uq_projects_org_name_lower, which SQLAlchemy cannot reflect.
    op.add_column('projects', sa.Column('run_counter', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('projects', sa.Column('job_concurrency', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('projects', sa.Column('cancel_superseded', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column('projects', sa.Column('schedules_synced_commit', sa.String(length=64), nullable=False,
                                        server_default=''))



def downgrade() -> None:
    for column in ("schedules_synced_commit", "cancel_superseded", "job_concurrency", "run_counter"):
        op.execute(f"ALTER TABLE projects DROP COLUMN {column}")  # SQLite >= 3.35 and PostgreSQL

    op.drop_table('pipeline_steps')
    with op.batch_alter_table('pipeline_job_needs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pipeline_job_needs_needs_id'))

    op.drop_table('pipeline_job_needs')
    op.drop_table('log_chunks')
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_artifacts_run_id'))
        batch_op.drop_index(batch_op.f('ix_artifacts_expires_at'))

    op.drop_table('artifacts')
    with op.batch_alter_table('pipeline_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_pipeline_jobs_status')

    op.drop_table('pipeline_jobs')
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_pipeline_runs_project_ref')

    op.drop_table('pipeline_runs')
    op.drop_table('project_variables')
    with op.batch_alter_table('pipeline_schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pipeline_schedules_next_run_at'))

    op.drop_table('pipeline_schedules')
