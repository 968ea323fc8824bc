"""Local accounts: creation, authentication, password changes."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.accounts import passwords
from appliance.errors import NotFound, ValidationError
from appliance.models import User
from appliance.models.base import utcnow
from appliance.names import check_email, check_username


def find_user(session: orm.Session, username: str) -> User | None:
    return session.scalar(sa.select(User).where(sa.func.lower(User.username) == username.strip().lower()))


def get_user(session: orm.Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def create_user(
    session: orm.Session,
    username: str,
    password: str,
    *,
    email: str | None = None,
    is_admin: bool = False,
    one_time: bool = False,
) -> User:
    """Create a local account. ``one_time`` marks a generated password that must be changed."""
    username = check_username(username)
    email = check_email(email)
    if find_user(session, username) is not None:
        raise ValidationError("username", f"{username!r} is already taken")
    if email and session.scalar(sa.select(User.id).where(sa.func.lower(User.email) == email.lower())):
        raise ValidationError("email", f"{email!r} is already used by another account")
    if not one_time and (problem := passwords.password_problem(password, username)):
        raise ValidationError("password", problem)
    user = User(
        username=username,
        email=email,
        password_hash=passwords.hash_password(password),
        is_admin=is_admin,
        must_change_password=one_time,
        session_token=secrets.token_hex(16),
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: orm.Session, username: str, password: str) -> User | None:
    """The active user with this name and password, or None; takes as long either way."""
    user = find_user(session, username) if username else None
    ok = passwords.verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_login_at = utcnow()
    return user


def change_password(session: orm.Session, user: User, current: str, new: str) -> None:
    if not passwords.verify_password(user.password_hash, current):
        raise ValidationError("current_password", "is not your current password")
    if new == current:
        raise ValidationError("new_password", "must differ from the current password")
    if problem := passwords.password_problem(new, user.username):
        raise ValidationError("new_password", problem)
    user.password_hash = passwords.hash_password(new)
    user.must_change_password = False
    # Sessions signed with the old token stop working: a changed password logs out elsewhere.
    user.session_token = secrets.token_hex(16)
