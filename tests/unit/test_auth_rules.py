"""The role table the README states, what a refusal says, the token format the
CLI prints and the server parses, and secrets stored with scrypt so a row
written by an earlier process still verifies."""

from __future__ import annotations

import hashlib
import re

import pytest

from jobsys.auth import (
    ROLE_RIGHTS,
    SYSTEM,
    Principal,
    Right,
    check_role,
    hash_secret,
    new_token,
    require,
    split_token,
    verify_secret,
)
from jobsys.errors import PermissionDenied, SpecError

R = Right

#: README: "viewer reads; operator starts catalog jobs, cancels, reruns; developer
#: also submits any spec, pickled code included; admin also manages users, tokens,
#: schedules and the catalog."
README_ROLES = {
    "viewer": {R.VIEW},
    "operator": {R.VIEW, R.START, R.CANCEL, R.RERUN},
    "developer": {R.VIEW, R.START, R.CANCEL, R.RERUN, R.SUBMIT, R.SUBMIT_CODE},
    "admin": {R.VIEW, R.START, R.CANCEL, R.RERUN, R.SUBMIT, R.SUBMIT_CODE, R.SCHEDULE, R.ADMIN},
}


@pytest.mark.parametrize("role", list(README_ROLES))
@pytest.mark.parametrize("right", list(Right))
def test_each_role_has_exactly_the_rights_the_readme_gives_it(role: str, right: Right) -> None:
    allowed = right in README_ROLES[role]
    assert Principal("olga", role).can(right) is allowed
    if allowed:
        require(Principal("olga", role), right)
    else:
        with pytest.raises(PermissionDenied) as caught:
            require(Principal("olga", role), right)
        # the 403 names the right and the role, as the API and pages show it
        assert caught.value.right == right.value
        assert str(caught.value) == (
            f"the '{right.value}' right is needed; your role '{role}' does not have it"
        )


def test_the_right_names_are_the_ones_routes_and_templates_use() -> None:
    # catalog templates narrow rights by these names, and 403 bodies carry them
    assert {right.value for right in Right} == {
        "view",
        "start",
        "submit",
        "submit_code",
        "cancel",
        "rerun",
        "schedule",
        "admin",
    }
    assert set(ROLE_RIGHTS) == set(README_ROLES)


@pytest.mark.parametrize("role", ["", "root", "Admin", "ADMIN "])
def test_an_unknown_role_can_do_nothing_and_is_refused_by_name(role: str) -> None:
    assert not any(Principal("mallory", role).can(right) for right in Right)
    with pytest.raises(SpecError) as caught:
        check_role(role)
    assert caught.value.fields == {
        "role": f"unknown role {role!r}; use one of viewer, operator, developer, admin"
    }


def test_known_roles_pass_the_check_unchanged() -> None:
    for role in README_ROLES:
        assert check_role(role) == role


def test_beat_and_workers_act_as_the_system_admin() -> None:
    assert SYSTEM.name == "system"
    assert all(SYSTEM.can(right) for right in Right)


def test_a_new_token_has_the_printed_form_and_parses_back_to_its_key_id() -> None:
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20  # random, never repeated
    for token, key_id in tokens:
        assert re.fullmatch(r"jst_[0-9a-f]{12}\.[A-Za-z0-9_-]{43}", token), token
        assert split_token(token) == (key_id, token.split(".", 1)[1])


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "jst_",
        "jsx_0123456789ab.secret",  # another prefix
        "0123456789ab.secret",  # none
        "jst_0123456789absecret",  # no dot
        "jst_0123456789ab.",  # no secret
        "jst_0123456789a.secret",  # key id of 11
        "jst_0123456789abc.secret",  # and of 13
        "jst_.secret",
    ],
)
def test_a_malformed_token_is_no_token(token: str) -> None:
    assert split_token(token) is None


def test_a_well_formed_token_splits_at_the_first_dot() -> None:
    assert split_token("jst_0123456789ab.s3cr.et") == ("0123456789ab", "s3cr.et")


def test_secrets_are_salted_scrypt_and_only_the_right_one_verifies() -> None:
    first, second = hash_secret("hunter2"), hash_secret("hunter2")
    assert first != second  # a fresh salt each time
    for stored in (first, second):
        scheme, salt, digest = stored.split("$")
        assert scheme == "scrypt"
        assert len(bytes.fromhex(salt)) == 16
        assert len(bytes.fromhex(digest)) == 32
        assert verify_secret("hunter2", stored)
        assert not verify_secret("hunter3", stored)
        assert not verify_secret("", stored)


def test_a_hash_stored_by_an_earlier_process_still_verifies() -> None:
    # Token and password rows outlive the processes that wrote them: the cost
    # (N=2**14, r=8, p=1) and the 32-byte digest are part of the stored format.
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"hunter2", salt=salt, n=2**14, r=8, p=1, dklen=32)
    stored = f"scrypt${salt.hex()}${digest.hex()}"
    assert verify_secret("hunter2", stored)
    assert not verify_secret("hunter2 ", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt",
        "scrypt$",
        "scrypt$00ff",
        "scrypt$$00ff",
        "bcrypt$00ff$00ff",
        "plain",
        "scrypt$00ff$00ff$00ff",  # a '$' too many: the digest is what follows the salt
    ],
)
def test_a_malformed_stored_hash_verifies_nothing(stored: str) -> None:
    assert verify_secret("anything", stored) is False


def test_the_scheme_must_be_scrypt_even_with_a_matching_digest() -> None:
    scheme, salt, digest = hash_secret("hunter2").split("$")
    assert verify_secret("hunter2", f"{scheme}${salt}${digest}")
    assert not verify_secret("hunter2", f"SCRYPT${salt}${digest}")
    assert not verify_secret("hunter2", f"md5${salt}${digest}")
