from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.models.base import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    username: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    email: orm.Mapped[str | None] = orm.mapped_column(sa.String(254))
    password_hash: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    is_admin: orm.Mapped[bool] = orm.mapped_column(default=False)
    is_active: orm.Mapped[bool] = orm.mapped_column(default=True)
    # Set for a generated one-time password: the next sign-in must choose a new one.
    must_change_password: orm.Mapped[bool] = orm.mapped_column(default=False)
    # Changes whenever the password changes, so sessions made before it stop working.
    session_token: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime, default=utcnow)
    last_login_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    # TOTP second factor: the shared secret encrypted like project secrets (AES-256-GCM),
    # set when enrolment is confirmed; the last accepted time step refuses a replayed code.
    totp_secret_ciphertext: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    totp_enabled_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    totp_last_step: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger)
    disabled_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)

    __table_args__ = (
        sa.Index("uq_users_username_lower", sa.func.lower(username), unique=True),
        sa.Index("uq_users_email_lower", sa.func.lower(email), unique=True),
    )

    # The duck-typed interface flask-login expects (no Flask import in the core).
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        # The session token is part of the id, so changing it signs every session out.
        return f"{self.id}:{self.session_token}"

    def __repr__(self) -> str:
        return f"<User {self.username}>"
