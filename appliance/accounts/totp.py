"""TOTP second factor (RFC 6238, 6 digits, 30-second steps) with pyotp.

The shared secret is stored like project secrets: AES-256-GCM under ``secrets.key``
(``SecretBox``), bound to the account by the associated data ``user:<id>:totp`` so a
ciphertext copied onto another account does not decrypt. The column holds base64 text.

An account is enrolling while it has a ciphertext but no ``totp_enabled_at``: the secret is
shown to its owner until a code from it is confirmed, and it does not yet guard sign-in.

A code is accepted for the current step or one step either side (clocks drift, people type
slowly), and each step only once: ``totp_last_step`` remembers the newest accepted step, so
a code seen over a shoulder or replayed from a log is refused. Callers load the user row
``FOR UPDATE`` so two requests cannot both accept the same step.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac

import pyotp

from appliance.errors import ValidationError
from appliance.models import User
from appliance.models.base import utcnow
from appliance.pipelines.secrets import SecretBox, SecretCorruptError

ISSUER = "PRTS"
DIGITS = 6
VALID_WINDOW = 1


def place(user_id: int) -> str:
    """The associated data binding a TOTP secret's ciphertext to its account."""
    return f"user:{int(user_id)}:totp"


def is_enabled(user: User) -> bool:
    return user.totp_enabled_at is not None and user.totp_secret_ciphertext is not None


def _secret(box: SecretBox, user: User) -> str:
    try:
        blob = base64.b64decode(user.totp_secret_ciphertext or "", validate=True)
    except (binascii.Error, ValueError):
        raise SecretCorruptError(f"the secret at {place(user.id)} is not base64 text") from None
    return box.decrypt(blob, place(user.id))


def begin_enrolment(box: SecretBox, user: User) -> str:
    """A new secret for the user to load into an authenticator app; replaces an unfinished
    enrolment. Refused while two-factor authentication is on (disable it first)."""
    if is_enabled(user):
        raise ValidationError("code", "two-factor authentication is already on")
    secret = pyotp.random_base32()  # 32 base32 letters: 160 bits, as RFC 4226 recommends
    user.totp_secret_ciphertext = base64.b64encode(box.encrypt(secret, place(user.id))).decode("ascii")
    user.totp_enabled_at = None
    user.totp_last_step = None
    return secret


def enrolment_secret(box: SecretBox, user: User) -> str | None:
    """The secret of an unfinished enrolment, or None when none is in progress."""
    if user.totp_secret_ciphertext is None or user.totp_enabled_at is not None:
        return None
    return _secret(box, user)


def provisioning_uri(secret: str, account_name: str) -> str:
    """The ``otpauth://`` URI authenticator apps import (as text or as a QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS).provisioning_uri(name=account_name, issuer_name=ISSUER)


def normalise_code(code: str | None) -> str | None:
    """The six digits of a typed code (spaces and a dash allowed), or None when it is not one."""
    digits = (code or "").replace(" ", "").replace("-", "")
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def _accept(box: SecretBox, user: User, code: str | None, now: dt.datetime | None) -> bool:
    digits = normalise_code(code)
    if digits is None:
        return False
    generator = pyotp.TOTP(_secret(box, user), digits=DIGITS)
    current = generator.timecode(now or utcnow())
    newest_used = user.totp_last_step if user.totp_last_step is not None else -1
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if step > newest_used and hmac.compare_digest(generator.generate_otp(step), digits):
            user.totp_last_step = step
            return True
    return False


def verify(box: SecretBox, user: User, code: str | None, now: dt.datetime | None = None) -> bool:
    """Whether ``code`` is a valid, unused code of an enabled second factor (uses it up)."""
    return is_enabled(user) and _accept(box, user, code, now)


WRONG_CODE = "is not the code your authenticator app shows now (check that the device's clock is right)"


def confirm_enrolment(box: SecretBox, user: User, code: str | None, now: dt.datetime | None = None) -> None:
    """Turn the second factor on once the user proves their app holds the secret."""
    if enrolment_secret(box, user) is None:
        raise ValidationError("code", "belongs to no enrolment: start setting up two-factor authentication again")
    if normalise_code(code) is None:
        raise ValidationError("code", f"must be the {DIGITS} digits your authenticator app shows")
    if not _accept(box, user, code, now):
        raise ValidationError("code", WRONG_CODE)
    user.totp_enabled_at = utcnow()


def disable(box: SecretBox, user: User, code: str | None, now: dt.datetime | None = None) -> None:
    """Turn the second factor off; needs a current code, so a stolen session alone cannot."""
    if not is_enabled(user):
        raise ValidationError("code", "two-factor authentication is not on")
    if normalise_code(code) is None:
        raise ValidationError("code", f"must be the {DIGITS} digits your authenticator app shows")
    if not _accept(box, user, code, now):
        raise ValidationError("code", WRONG_CODE)
    clear(user)


def clear(user: User) -> None:
    """Forget the second factor (also an unfinished enrolment)."""
    user.totp_secret_ciphertext = None
    user.totp_enabled_at = None
    user.totp_last_step = None
