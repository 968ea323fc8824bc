"""argon2id password hashing (argon2-cffi's defaults follow RFC 9106's recommendations) and
the policy a new password must meet."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing is deliberately slow; refuse megabyte "passwords"

_hasher = PasswordHasher()  # argon2id
# Verified against when the account does not exist, so a wrong name costs as long as a
# wrong password and the response time does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# zxcvbn's list of the 30,000 most common passwords from leaked sets (all lower case).
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str, username: str = "") -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters long"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters long"
    if username and username.lower() in password.lower():
        return "must not contain the username"
    if len(set(password)) < 4:
        return "is too repetitive"
    if password.lower() in COMMON_PASSWORDS:
        return f"is one of the {len(COMMON_PASSWORDS):,} most common passwords"
    return None


def generate_password() -> str:
    """A one-time password an operator can type: 20 characters from a 62-letter alphabet."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(20))
