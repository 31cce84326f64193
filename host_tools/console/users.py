"""Console users and their sessions, in the receiver database.

Passwords are hashed with Argon2id (argon2-cffi). There is no default user and no default
password: the first one is made with ``polewatch user add NAME --role supervisor``. A session is a
random token in an HttpOnly cookie; only its SHA-256 is stored, with the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from firmware.errors import PolewatchError
from host_tools.receiver.database import Connection, IntegrityError
from host_tools.receiver.store import ReceiverStore

logger = logging.getLogger(__name__)

ROLES = ("operator", "supervisor", "technician", "viewer")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
SESSION_IDLE_S = 12 * 3600.0  # an operator's shift
SESSION_MAX_S = 24 * 3600.0
SEEN_RESOLUTION_S = 60.0  # how stale a session's "last seen" may get before it is written

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    pw_hash     TEXT NOT NULL,
    created     REAL NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  TEXT PRIMARY KEY,
    "user"      TEXT NOT NULL REFERENCES users (name),
    csrf        TEXT NOT NULL,
    created     REAL NOT NULL,
    seen        REAL NOT NULL,
    remote      TEXT
);
"""


class UserError(PolewatchError, ValueError):
    """A user name, role or password that is not acceptable; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class User:
    """A console user."""

    name: str
    role: str
    created: float
    disabled: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (never the hash)."""
        return {
            "name": self.name,
            "role": self.role,
            "created": self.created,
            "disabled": self.disabled,
        }


@dataclass(frozen=True)
class Session:
    """A logged-in session."""

    user: User
    csrf: str
    created: float


def check_name(name: object) -> str:
    """A valid user name, or :class:`UserError`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(
            "name", "2..32 characters: lower-case letters, digits, '.', '_' or '-' (not first)"
        )
    return name


def check_role(role: object) -> str:
    """A valid role, or :class:`UserError`."""
    if role not in ROLES:
        raise UserError("role", f"expected one of {', '.join(ROLES)}")
    return str(role)


def check_password(password: object, name: str | None = None) -> str:
    """A password good enough to store, or :class:`UserError`."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError("password", f"expected {MIN_PASSWORD}..{MAX_PASSWORD} characters")
    if name is not None and password.lower() == name.lower():
        raise UserError("password", "must not be the user name")
    return password


class Users:
    """User accounts and sessions of one receiver database. Thread-safe (through the store)."""

    def __init__(self, store: ReceiverStore, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        store.migrate(_SCHEMA)
        # Verified against when the user does not exist, so that a wrong name takes as long as a
        # wrong password and does not tell which names exist.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    # --- accounts ------------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str, now: float) -> User:
        """Create a user; :class:`UserError` if the name is taken or anything is invalid."""
        check_name(name)
        check_role(role)
        pw_hash = self.hasher.hash(check_password(password, name))

        def insert(db: Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO users (name, role, pw_hash, created) VALUES (?, ?, ?, ?)",
                    (name, role, pw_hash, now),
                )
            except IntegrityError:
                raise UserError("name", f"user {name!r} exists already") from None

        self.store.write(insert)
        logger.info("console user %s added with role %s", name, role)
        return User(name, role, now, False)

    def get(self, name: str) -> User | None:
        """A user by name."""
        row = self.store.read(
            lambda db: db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else _user(row)

    def list(self) -> list[User]:
        """Every user, by name."""
        rows = self.store.read(
            lambda db: db.execute("SELECT * FROM users ORDER BY name").fetchall()
        )
        return [_user(r) for r in rows]

    def count(self, role: str | None = None, enabled_only: bool = True) -> int:
        """How many users (of a role) there are."""
        row = self.store.read(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM users WHERE (? IS NULL OR role = ?) AND (? = 0 OR "
                "disabled = 0)",
                (role, role, int(enabled_only)),
            ).fetchone()
        )
        return int(row[0])

    def update(
        self,
        name: str,
        *,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Change a user's role, password or whether it may log in; sessions end on any change."""
        if role is not None:
            check_role(role)
        pw_hash = self.hasher.hash(check_password(password, name)) if password is not None else None

        def change(db: Connection) -> User:
            row = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UserError("name", f"no user {name!r}")
            user = _user(row)
            new_role = role or user.role
            new_disabled = user.disabled if disabled is None else disabled
            if (
                user.role == "supervisor"
                and not user.disabled
                and (new_role != "supervisor" or new_disabled)
            ):
                others = db.execute(
                    "SELECT COUNT(*) FROM users WHERE role = 'supervisor' AND disabled = 0 "
                    "AND name != ?",
                    (name,),
                ).fetchone()[0]
                if not others:
                    raise UserError("role", "the last active supervisor cannot be removed")
            db.execute(
                "UPDATE users SET role = ?, disabled = ?, pw_hash = COALESCE(?, pw_hash) "
                "WHERE name = ?",
                (new_role, int(new_disabled), pw_hash, name),
            )
            db.execute('DELETE FROM sessions WHERE "user" = ?', (name,))
            return User(name, new_role, user.created, new_disabled)

        user = self.store.write(change)
        logger.info(
            "console user %s changed (role %s, disabled %s)", name, user.role, user.disabled
        )
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the name and password match an enabled account (takes ~50 ms either way)."""
        row = self.store.read(
            lambda db: db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        )
        stored = row["pw_hash"] if row is not None else self._dummy
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled"]:
            return None
        if self.hasher.check_needs_rehash(stored):  # the hasher's parameters were raised
            new_hash = self.hasher.hash(password)
            self.store.write(
                lambda db: db.execute(
                    "UPDATE users SET pw_hash = ? WHERE name = ?", (new_hash, name)
                )
            )
        return _user(row)

    # --- sessions ------------------------------------------------------------------------------

    def open_session(self, user: User, now: float, remote: str | None) -> tuple[str, Session]:
        """A new session for ``user``: the cookie's token (kept only by the browser) and it."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)

        def insert(db: Connection) -> None:
            # Sessions past their lifetime are deleted whenever someone logs in.
            db.execute(
                "DELETE FROM sessions WHERE seen < ? OR created < ?",
                (now - SESSION_IDLE_S, now - SESSION_MAX_S),
            )
            db.execute(
                'INSERT INTO sessions (token_hash, "user", csrf, created, seen, remote) '
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_hash(token), user.name, csrf, now, now, remote),
            )

        self.store.write(insert)
        return token, Session(user, csrf, now)

    def session(self, token: str, now: float) -> Session | None:
        """The live session a cookie's token names (None: unknown, expired, user disabled)."""
        key = _hash(token)
        row = self.store.read(
            lambda db: db.execute(
                "SELECT s.csrf, s.created AS s_created, s.seen, u.* FROM sessions s "
                'JOIN users u ON u.name = s."user" WHERE s.token_hash = ?',
                (key,),
            ).fetchone()
        )
        if row is None:
            return None
        started = float(row["s_created"])
        if row["disabled"] or row["seen"] < now - SESSION_IDLE_S or started < now - SESSION_MAX_S:
            self.close_session(token)
            return None
        if now - row["seen"] > SEEN_RESOLUTION_S:
            self.store.write(
                lambda db: db.execute(
                    "UPDATE sessions SET seen = ? WHERE token_hash = ?", (now, key)
                )
            )
        return Session(_user(row), row["csrf"], started)

    def close_session(self, token: str) -> None:
        """End a session (log out)."""
        key = _hash(token)
        self.store.write(lambda db: db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,)))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(row["name"], row["role"], float(row["created"]), bool(row["disabled"]))
