import pytest

from appliance.accounts import passwords
from appliance.errors import ValidationError
from appliance.models import Role
from appliance.names import check_email, check_slug


def test_argon2id_hashes_verify_and_differ():
    h1, h2 = passwords.hash_password("a long enough pass"), passwords.hash_password("a long enough pass")
    assert h1.startswith("$argon2id$") and h1 != h2
    assert passwords.verify_password(h1, "a long enough pass")
    assert not passwords.verify_password(h1, "a long enough pasS")
    assert not passwords.verify_password(None, "anything")
    assert not passwords.verify_password("not-a-hash", "anything")


@pytest.mark.parametrize(
    "password, problem",
    [("short", "at least 12"), ("aaaaaaaaaaaaaa", "repetitive"), ("xx-alice-password-xx", "username"), ("x" * 1025, "at most")],
)
def test_password_policy(password, problem):
    assert problem in passwords.password_problem(password, "alice")


@pytest.mark.parametrize("password", ["qwertyuiop123", "QwertyUiop123", "PASSWORD1234", "1q2w3e4r5t6y"])
def test_common_passwords_are_refused_whatever_their_case(password):
    assert passwords.password_problem(password, "alice") == "is one of the 30,000 most common passwords"


def test_the_common_list_is_zxcvbns_and_only_refuses_what_is_on_it():
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    assert len(passwords.COMMON_PASSWORDS) == len(set(FREQUENCY_LISTS["passwords"])) >= 29_000
    long_common = sorted(p for p in passwords.COMMON_PASSWORDS if len(p) >= passwords.MIN_LENGTH and len(set(p)) >= 4)
    assert long_common and all(passwords.password_problem(p) == "is one of the 30,000 most common passwords"
                               for p in long_common)
    assert passwords.password_problem(long_common[0] + "!") is None  # a near miss is not on the list


def test_good_password_and_generated_ones_pass_policy():
    assert passwords.password_problem("correct horse battery staple", "alice") is None
    generated = {passwords.generate_password() for _ in range(50)}
    assert len(generated) == 50 and all(passwords.password_problem(p) is None for p in generated)


@pytest.mark.parametrize("name", ["web", "My.Project_2", "a", "x" * 100, "a-b"])
def test_slug_accepts(name):
    assert check_slug("name", name) == name


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "required"),
        ("-lead", "may contain only"),
        ("trail-", "may contain only"),
        ("a..b", "may contain only"),
        ("sp ace", "may contain only"),
        ("sl/ash", "may contain only"),
        ("<script>", "may contain only"),
        ("x" * 101, "at most 100"),
        ("admin", "reserved"),
        ("repo.git", "must not end with"),
        ("ünïcode", "may contain only"),
    ],
)
def test_slug_refuses(name, message):
    with pytest.raises(ValidationError, match=message) as info:
        check_slug("name", name)
    assert info.value.field == "name"


def test_email_and_role_parsing():
    assert check_email(" a@b.example ") == "a@b.example"
    assert check_email("") is None
    with pytest.raises(ValidationError, match="not an email"):
        check_email("nope")
    assert Role.parse("Maintainer") is Role.MAINTAINER
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        Role.parse("owner")
