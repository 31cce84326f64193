"""``polewatch user``: console accounts from the command line (the first supervisor, resets).

Passwords are read from the terminal (asked twice, not echoed) or, when stdin is not a terminal,
as one line from stdin; never from the command line, where other users and shell history see it.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import time

from firmware.errors import PolewatchError
from host_tools.console.users import ROLES, UserError, Users, check_password
from host_tools.receiver.audit import AuditLog
from host_tools.receiver.database import database_arg, default_database
from host_tools.receiver.store import ReceiverStore
from polewatch.helptext import ExampleFormatter

logger = logging.getLogger(__name__)

EXAMPLE = """examples:
  polewatch user add anna --role supervisor          # asks for the password twice
  printf '%s\\n' "$PW" | polewatch user add bo --role operator --db var/receiver.sqlite
  polewatch user passwd anna
  polewatch user disable bo
  polewatch user list
"""


def add_user_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``user`` subcommand."""
    p = sub.add_parser(
        "user",
        help="manage console users (add, passwd, role, disable, enable, list)",
        description="Manage the console's users in the receiver database. There is no default "
        "user: create the first supervisor here. Passwords are read from the terminal, or as one "
        "line from stdin, never from the command line.",
        epilog=EXAMPLE,
        formatter_class=ExampleFormatter,
    )
    p.add_argument("action", choices=["add", "passwd", "role", "disable", "enable", "list"])
    p.add_argument("name", nargs="?", metavar="NAME", help="the user's name")
    p.add_argument("--role", choices=ROLES, help="add, role: the user's role")
    p.add_argument(
        "--db",
        type=database_arg,
        default=default_database(),
        metavar="FILE|URL",
        help="the receiver's database: an SQLite file, or postgresql://USER@HOST/NAME for "
        "several receivers (default $POLEWATCH_DB, else var/receiver.sqlite)",
    )


def read_password(prompt: str = "Password") -> str:
    """A password from the terminal (twice) or one line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"{prompt}: ")
        if getpass.getpass(f"{prompt} again: ") != first:
            raise UserError("password", "the two entries differ")
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def cmd_user(args: argparse.Namespace) -> int:
    """``user``."""
    if args.action != "list" and not args.name:
        raise PolewatchError(f"user {args.action}: give the user's NAME")
    if args.action in ("add", "role") and args.role is None:
        raise PolewatchError(f"user {args.action}: give --role ({', '.join(ROLES)})")
    store = ReceiverStore(args.db)
    try:
        users = Users(store)
        audit = AuditLog(store)
        now = time.time()
        if args.action == "list":
            for user in users.list():
                state = "disabled" if user.disabled else "active"
                print(f"{user.name}\t{user.role}\t{state}")
            return 0
        if args.action == "add":
            password = check_password(read_password(), args.name)
            users.add(args.name, args.role, password, now)
            detail = {"role": args.role, "via": "command line"}
        elif args.action == "passwd":
            users.update(args.name, password=check_password(read_password(), args.name))
            detail = {"password": "changed", "via": "command line"}
        elif args.action == "role":
            users.update(args.name, role=args.role)
            detail = {"role": args.role, "via": "command line"}
        else:
            users.update(args.name, disabled=args.action == "disable")
            detail = {"disabled": args.action == "disable", "via": "command line"}
        audit.record(
            now, f"user.{args.action}", user=getpass.getuser(), target=args.name, detail=detail
        )
        print(f"user {args.name}: {args.action} done")
        return 0
    finally:
        store.close()
