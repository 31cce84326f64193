"""The ``polewatch`` command line: one program, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from firmware.errors import PolewatchError
from host_tools.receiver.database import database_arg, default_database
from host_tools.receiver.endpoint import Endpoint
from polewatch.helptext import ExampleFormatter

logger = logging.getLogger("polewatch")

EPILOG = "Run 'polewatch COMMAND --help' for the options of each command."
VALIDATE_EXAMPLE = """examples:
  polewatch validate-config board_configs/rpi4-lepton35.toml sites/pole-0003.toml
  polewatch validate-config sim/sites/parking_lot.toml      # a site on its own
"""
UNIT_EXAMPLE = """examples:
  polewatch unit --board /etc/polewatch/board.toml --site /etc/polewatch/site.toml \\
      --data-dir /var/lib/polewatch
  polewatch unit --board board_configs/sim.toml --site sim/sites/parking_lot.toml \\
      --scenario car_fire --data-dir var/unit           # the sim board, no hardware
"""
RECEIVER_EXAMPLE = """examples:
  polewatch receiver --db var/receiver.sqlite --coap 0.0.0.0:5683 --http 127.0.0.1:8080
  polewatch receiver --db var/receiver.sqlite --forward forward.toml   # DC-09, webhooks
"""
SIM_EXAMPLE = """examples:
  polewatch sim car_fire --receiver 127.0.0.1:5683 --receiver-keys var
  polewatch sim sim/scenarios/loitering.toml --speed 5 --data-dir var/sim-unit
"""
DEMO_EXAMPLE = """examples:
  polewatch demo                                # car fire at 2x, console on :8080
  polewatch demo --scenario person_down --speed 5
  polewatch demo --once --scenario camera_tamper  # headless, exit 0 if the outcome holds
"""
# 'polewatch unit' exits with this to be restarted (systemd Restart=always) with a new config.
EXIT_RESTART = 75  # EX_TEMPFAIL


def _add_logging(p: argparse.ArgumentParser, default: str = "INFO") -> None:
    p.add_argument(
        "--log-level",
        default=default,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help=f"what to log on stderr (default {default})",
    )
    p.add_argument("--log-file", type=Path, help="also write every INFO line to this file")


def endpoint(default_port: int) -> Callable[[str], Endpoint]:
    """An argparse type for ``HOST[:PORT]``."""

    def parse(text: str) -> Endpoint:
        try:
            return Endpoint.parse(text, default_port)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="polewatch",
        description="Software for municipal smart camera poles: the unit runtime, the receiving "
        "centre, the simulator and the technician's tools.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "validate-config",
        epilog=VALIDATE_EXAMPLE,
        formatter_class=ExampleFormatter,
        help="check board and site config files",
        description="Validate board and site config files without starting "
        "anything. Boards and sites given together are also checked "
        "against each other. Exits 0 only when all are valid.",
    )
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="board config (has [board]) or site config (has [unit])",
    )

    p = sub.add_parser(
        "unit",
        epilog=UNIT_EXAMPLE,
        formatter_class=ExampleFormatter,
        help="run the pole unit",
        description="Run the pole-unit runtime: cameras, detection, rules, "
        "deterrence, outbox and uplink. With the sim board it looks at "
        "a simulated parking lot (a quiet one unless --scenario).",
    )
    p.add_argument("--board", type=Path, required=True, help="board config file")
    p.add_argument("--site", type=Path, required=True, help="site config file")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/unit"),
        help="where the outbox lives (default var/unit)",
    )
    p.add_argument(
        "--security-dir",
        type=Path,
        help="the unit's OSCORE context (default DATA_DIR/oscore), made by 'polewatch provision'",
    )
    p.add_argument("--scenario", help="sim board only: scenario world to look at (name or path)")
    _add_logging(p)

    from polewatch.provision import add_provision_parser

    _add_logging(add_provision_parser(sub))

    p = sub.add_parser(
        "receiver",
        epilog=RECEIVER_EXAMPLE,
        formatter_class=ExampleFormatter,
        help="run the receiver and its web console",
        description="Run the receiving centre: the CoAP endpoint that verifies, "
        "stores and acknowledges alarms, and the web console.",
    )
    p.add_argument(
        "--db",
        type=database_arg,
        default=default_database(),
        metavar="FILE|URL",
        help="the receiver's database: an SQLite file, or postgresql://USER@HOST/NAME for "
        "several receivers (default $POLEWATCH_DB, else var/receiver.sqlite)",
    )
    p.add_argument(
        "--keys",
        type=Path,
        help="directory of the units' OSCORE contexts, units/UNIT/ (default: the database's)",
    )
    p.add_argument(
        "--coap",
        type=endpoint(5683),
        default=Endpoint("127.0.0.1", 5683),
        help="CoAP address to bind, HOST[:PORT] (default 127.0.0.1:5683)",
    )
    p.add_argument(
        "--http",
        type=endpoint(8080),
        default=Endpoint("127.0.0.1", 8080),
        help="console address to bind, HOST[:PORT] (default 127.0.0.1:8080)",
    )
    p.add_argument("--no-console", action="store_true", help="do not serve the web console")
    p.add_argument(
        "--forward",
        type=Path,
        metavar="FILE",
        help="forwarding file (TOML): SIA DC-09 and webhook targets, retention periods",
    )
    p.add_argument(
        "--instance",
        type=int,
        default=0,
        choices=range(256),
        metavar="N",
        help="this receiver's number (0..255) among several on one PostgreSQL database: each "
        "must have its own, so that their OSCORE replies never share a nonce (default 0)",
    )
    _add_logging(p)

    p = sub.add_parser(
        "sim",
        epilog=SIM_EXAMPLE,
        formatter_class=ExampleFormatter,
        help="run one simulated unit playing a scenario",
        description="Run one simulated unit playing a scenario against a running "
        "receiver, then check the scenario's expected outcome of "
        "outputs and outbox (exit 1 if it does not hold).",
    )
    p.add_argument("scenario", help="scenario name (e.g. car_fire) or path to a .toml file")
    p.add_argument(
        "--receiver",
        type=endpoint(5683),
        default=Endpoint("127.0.0.1", 5683),
        help="receiver CoAP address HOST[:PORT] (default 127.0.0.1:5683)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="simulated seconds per real second; 0 = as fast as possible (default)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var/sim-unit"),
        help="where the unit's outbox lives (default var/sim-unit)",
    )
    p.add_argument("--duration", type=float, help="override the scenario's duration (s)")
    p.add_argument(
        "--receiver-keys",
        type=Path,
        help="the receiver's key directory: provision the unit there if it has no OSCORE context",
    )
    _add_logging(p)

    p = sub.add_parser(
        "demo",
        epilog=DEMO_EXAMPLE,
        formatter_class=ExampleFormatter,
        help="receiver + console + a simulated unit playing a scenario",
        description="Start a receiver with its console and one simulated unit "
        "playing a scenario; print the console's address and a line "
        "per alarm; Ctrl-C stops. With --once: headless, full speed, "
        "exit 0 only if the scenario's expected outcome holds.",
    )
    p.add_argument("--scenario", default="car_fire", help="scenario name or path (car_fire)")
    p.add_argument(
        "--once",
        action="store_true",
        help="play once headless at full speed, check the outcome and exit",
    )
    p.add_argument(
        "--speed",
        type=float,
        help="simulated seconds per real second (default 2; --once: 0 = full speed)",
    )
    p.add_argument("--coap-port", type=int, default=0, help="receiver CoAP port (default: free)")
    p.add_argument("--http-port", type=int, default=8080, help="console port (default 8080)")
    p.add_argument("--data-dir", type=Path, help="data and logs (default: a new temp dir)")
    _add_logging(p, default="WARNING")

    from polewatch.flash import add_flash_parser

    add_flash_parser(sub)
    from polewatch.bundle import add_bundle_parser, add_slot_parser

    _add_logging(add_bundle_parser(sub))
    _add_logging(add_slot_parser(sub))
    from host_tools.diag.cli import add_diag_parser

    add_diag_parser(sub)
    from host_tools.console.users_cli import add_user_parser

    add_user_parser(sub)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    """``validate-config``."""
    from firmware.config.load import validate_files

    problems = validate_files(args.files)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{len(args.files)} file(s) valid")
    return 0


def cmd_unit(args: argparse.Namespace) -> int:
    """``unit``."""
    from firmware import systemd
    from firmware.clock import SystemClock
    from firmware.config.load import load_board
    from firmware.config.updates import effective_site
    from firmware.hal.registry import HalContext
    from firmware.runtime import UnitRuntime
    from firmware.uplink.protocol import FaultCode

    board = load_board(args.board)
    site, site_path, stored_problem = effective_site(board, args.site, args.data_dir)
    logger.info("site config: %s", site_path)
    ctx = HalContext(clock=SystemClock())
    if board.thermal is not None and board.thermal.backend == "sim":
        from sim.scenario import load_scenario, resolve
        from sim.sensors import sensor_for
        from sim.world import ParkingLotWorld, WorldSpec

        spec = load_scenario(resolve(args.scenario)).world if args.scenario else WorldSpec()
        ctx.scene = ParkingLotWorld(spec, board.thermal.width, board.thermal.height, 0)
        ctx.sensor_factory = sensor_for
        ctx.sim_start = ctx.clock.now()

    async def main() -> bool:
        runtime = UnitRuntime(
            board, site, ctx, args.data_dir, args.security_dir, config_files=(args.board, args.site)
        )
        if stored_problem is not None:  # running on the last good config: say why
            runtime.faults.raise_(FaultCode.CONFIG, "site", stored_problem)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runtime.request_stop)
        # systemd's READY and watchdog pings, and the health file the A/B update check reads.
        heartbeats = runtime.uplink.heartbeats
        companion = asyncio.create_task(
            systemd.companion(lambda: heartbeats.acknowledged, args.data_dir)
        )
        try:
            await runtime.run()
        finally:
            companion.cancel()
            await asyncio.gather(companion, return_exceptions=True)
        return runtime.restart_requested

    if asyncio.run(main()):
        return EXIT_RESTART
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    """``provision``."""
    from polewatch.provision import cmd_provision as provision

    return provision(args)


def cmd_receiver(args: argparse.Namespace) -> int:
    """``receiver``."""
    from host_tools.forward.config import load_forward_config
    from host_tools.receiver.server import Receiver

    forward = load_forward_config(args.forward) if args.forward else None
    receiver = Receiver(
        args.db,
        args.coap,
        None if args.no_console else args.http,
        args.keys,
        forward=forward,
        instance=args.instance,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await receiver.serve_forever(stop)

    asyncio.run(main())
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    """``sim``."""
    from firmware.uplink.outbox import Outbox
    from sim.expect import check_outcome
    from sim.runner import build_sim_unit
    from sim.scenario import resolve

    ep = args.receiver
    unit = build_sim_unit(
        resolve(args.scenario),
        args.data_dir,
        args.speed,
        (ep.host, ep.port),
        receiver_keys=args.receiver_keys,
    )
    stop_at = unit.start + (args.duration or unit.scenario.scenario.duration_s)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, unit.runtime.request_stop)
        await unit.runtime.run(stop_at=stop_at, drain_timeout_s=30.0)

    asyncio.run(main())
    box = Outbox(args.data_dir / "outbox.sqlite")
    depth = box.depth()
    box.close()
    # The receiver's alarms are not visible from here; check outputs and delivery.
    expect = unit.scenario.expect.model_copy(update={"alarms": []})
    problems = check_outcome(expect, [], unit.output_histories(), unit.start, depth)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_flash(args: argparse.Namespace) -> int:
    """``flash``."""
    from polewatch.flash import cmd_flash as flash

    return flash(args)


def cmd_diag(args: argparse.Namespace) -> int:
    """``diag``."""
    from host_tools.diag.cli import cmd_diag as diag

    return diag(args)


def cmd_user(args: argparse.Namespace) -> int:
    """``user``."""
    from host_tools.console.users_cli import cmd_user as run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``."""
    from polewatch.demo import run_demo
    from sim.scenario import resolve

    speed = args.speed if args.speed is not None else (0.0 if args.once else 2.0)
    return run_demo(
        resolve(args.scenario), speed, args.once, args.coap_port, args.http_port, args.data_dir
    )


COMMANDS = {
    "provision": cmd_provision,
    "validate-config": cmd_validate,
    "unit": cmd_unit,
    "receiver": cmd_receiver,
    "sim": cmd_sim,
    "demo": cmd_demo,
    "flash": cmd_flash,
    "bundle": lambda args: _release_cmd("cmd_bundle", args),
    "slot": lambda args: _release_cmd("cmd_slot", args),
    "diag": cmd_diag,
    "user": cmd_user,
}


def _release_cmd(name: str, args: argparse.Namespace) -> int:
    """``bundle`` and ``slot`` (polewatch/bundle.py)."""
    from polewatch import bundle

    command: Callable[[argparse.Namespace], int] = getattr(bundle, name)
    return command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from polewatch.logs import setup_logging

    args = build_parser().parse_args(argv)
    if hasattr(args, "log_level"):
        log_file = args.log_file
        if args.command == "demo" and log_file is None and args.data_dir is not None:
            log_file = args.data_dir / "polewatch.log"
        setup_logging(args.log_level, log_file)
    try:
        return COMMANDS[args.command](args)
    except (PolewatchError, FileNotFoundError, FileExistsError) as exc:
        print(f"polewatch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
