"""Passwords are kept as scrypt hashes (the README's promise), when a user is
added and when the password is changed."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from jobsys import service
from jobsys.auth import Principal
from jobsys.context import Context
from jobsys.errors import Unauthenticated
from jobsys.store.models import User

ADMIN = Principal("ada", "admin", "test")


def stored_hash(ctx: Context, name: str) -> str:
    with ctx.sessions() as session:
        found = session.scalar(select(User.password_hash).where(User.name == name))
    assert found is not None
    return found


def is_scrypt_of(stored: str, password: str) -> bool:
    """Recompute the hash with hashlib's scrypt from the stored parameters and
    salt, so a hash that only looks like werkzeug's scrypt format fails."""
    method, salt, digest = stored.split("$")
    name, n, r, p = method.split(":")
    assert name == "scrypt"
    n_, r_, p_ = int(n), int(r), int(p)
    again = hashlib.scrypt(
        password.encode(), salt=salt.encode(), n=n_, r=r_, p=p_, maxmem=132 * n_ * r_ * p_
    )
    return again.hex() == digest


def test_an_added_users_password_is_stored_as_a_salted_scrypt_hash(ctx: Context) -> None:
    service.add_user(ctx, ADMIN, name="sam", password="correct horse", role="operator")
    service.add_user(ctx, ADMIN, name="sue", password="correct horse", role="operator")
    sam = stored_hash(ctx, "sam")
    assert sam.startswith("scrypt:32768:8:1$"), sam  # werkzeug's scrypt, its default cost
    assert "correct horse" not in sam
    assert is_scrypt_of(sam, "correct horse")
    assert not is_scrypt_of(sam, "correct horsf")
    assert stored_hash(ctx, "sue") != sam  # salted: the same password, another hash
    assert service.sign_in(ctx, "sam", "correct horse").name == "sam"


def test_a_changed_password_is_stored_as_a_new_scrypt_hash(ctx: Context) -> None:
    service.add_user(ctx, ADMIN, name="sam", password="correct horse", role="operator")
    before = stored_hash(ctx, "sam")
    service.update_user(ctx, ADMIN, "sam", password="battery staple")
    after = stored_hash(ctx, "sam")
    assert after != before
    assert after.startswith("scrypt:32768:8:1$"), after
    assert is_scrypt_of(after, "battery staple")
    assert not is_scrypt_of(after, "correct horse")
    assert service.sign_in(ctx, "sam", "battery staple").name == "sam"
    with pytest.raises(Unauthenticated):
        service.sign_in(ctx, "sam", "correct horse")
    service.update_user(ctx, ADMIN, "sam", role="viewer")  # no password given: the hash stays
    assert stored_hash(ctx, "sam") == after
