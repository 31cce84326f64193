"""``polewatch provision``: a new unit's identity, OSCORE context, site config and registration."""

from __future__ import annotations

import argparse
import logging
import urllib.parse
from pathlib import Path

from host_tools.provision.identity import (
    DEFAULT_TEMPLATE,
    PASSWORD_ENV,
    SiteValues,
    provision_unit,
)
from host_tools.provision.oscore import ProvisionError
from polewatch.helptext import ExampleFormatter

logger = logging.getLogger(__name__)

PROVISION_EXAMPLE = """examples:
  # with the receiver's key directory at hand (a lab, the simulator):
  polewatch provision pole-0003 --unit-dir units/pole-0003/oscore --receiver-keys var \\
      --site-out units/pole-0003/site.toml --receiver-host 127.0.0.1 --board board_configs/sim.toml

  # through the receiver's registration API, logged in to its console as a technician (the
  # password is asked for, or read from $POLEWATCH_PASSWORD; the unit's side comes back):
  polewatch provision pole-0003 --unit-dir units/pole-0003/oscore --user anna \\
      --receiver-url https://receiver.example:8443 --site-out units/pole-0003/site.toml \\
      --name "Parkering Väst" --latitude 59.37 --longitude 16.51
"""


def add_provision_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``provision`` subcommand; return its parser."""
    p = sub.add_parser(
        "provision",
        help="create a unit's identity and OSCORE keys, its site config, and register it",
        description="Create a new unit: its OSCORE security context pair (one side for the unit, "
        "to install as its --security-dir or with 'polewatch flash --identity'; one kept by the "
        "receiver, which finds it without a restart), and with --site-out its site config from "
        "a template. The receiver allocates the key id: give its key directory "
        "(--receiver-keys) or its console URL (--receiver-url, registration API). Secrets are "
        "written owner-only and never printed.",
        epilog=PROVISION_EXAMPLE,
        formatter_class=ExampleFormatter,
    )
    p.add_argument("unit_id", metavar="UNIT_ID", help="the unit's id, as in its site config")
    p.add_argument("--unit-dir", type=Path, required=True, help="where to write the unit's context")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--receiver-keys",
        type=Path,
        help="the receiver's key directory (its --keys; default var)",
    )
    where.add_argument(
        "--receiver-url",
        metavar="URL",
        help="the receiver console's URL: register through its API (https, or http on loopback), "
        "logged in as --user",
    )
    p.add_argument(
        "--user",
        metavar="NAME",
        help="console user (technician or supervisor) for --receiver-url; the password is read "
        f"from ${PASSWORD_ENV} if set, else asked for",
    )
    site = p.add_argument_group("site config (with --site-out)")
    site.add_argument("--site-out", type=Path, help="write the unit's site config here")
    site.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help="site config template with ${unit_id}, ${name}, ${receiver_host}, ${receiver_port}, "
        "${timezone}, ${latitude}, ${longitude}, ${reporting_time_s}, ${thermal_width}, "
        "${thermal_height} (default: the shipped one)",
    )
    site.add_argument("--board", type=Path, help="board config: check the site against it")
    site.add_argument("--name", default="", help="the unit's place, e.g. 'Parkering Väst'")
    site.add_argument(
        "--receiver-host", help="receiver CoAP host for the unit (default: --receiver-url's host)"
    )
    site.add_argument("--receiver-port", type=int, default=5683, help="receiver CoAP port (5683)")
    site.add_argument("--timezone", default="Europe/Stockholm", help="IANA time zone")
    site.add_argument("--latitude", type=float, help="the pole's latitude (for sunset schedules)")
    site.add_argument("--longitude", type=float, help="the pole's longitude")
    site.add_argument(
        "--reporting-time", type=float, default=180.0, help="seconds before 'offline' (180)"
    )
    return p


def cmd_provision(args: argparse.Namespace) -> int:
    """``provision``."""
    if args.receiver_url is not None and not args.user:
        raise ProvisionError("--receiver-url needs --user NAME (a technician's console login)")
    if args.user and args.receiver_url is None:
        raise ProvisionError("--user is for --receiver-url (the console's registration API)")
    values = None
    if args.site_out is not None:
        host = args.receiver_host
        if host is None and args.receiver_url is not None:
            host = urllib.parse.urlsplit(args.receiver_url).hostname
        if host is None:
            raise ProvisionError("--site-out needs --receiver-host (the unit's receiver)")
        values = SiteValues(
            unit_id=args.unit_id,
            receiver_host=host,
            receiver_port=args.receiver_port,
            name=args.name,
            timezone=args.timezone,
            latitude=args.latitude,
            longitude=args.longitude,
            reporting_time_s=args.reporting_time,
        )
        if args.board is not None:
            from firmware.config.load import load_board

            thermal = load_board(args.board).thermal
            if thermal is not None:
                values.thermal_width, values.thermal_height = thermal.width, thermal.height
    keys = args.receiver_keys
    if keys is None and args.receiver_url is None:
        keys = Path("var")
    done = provision_unit(
        args.unit_id,
        args.unit_dir,
        receiver_keys=keys,
        receiver_url=args.receiver_url,
        user=args.user,
        site_out=args.site_out,
        site_values=values,
        template=args.template,
        board=args.board,
    )
    print(f"unit {done.unit_id}: OSCORE key id {done.kid.hex()}")
    print(f"  unit context (owner-only): {done.context_dir}")
    if done.site is not None:
        print(f"  site config: {done.site}")
    print(f"  registered with the receiver: {done.registered_at}")
    return 0
