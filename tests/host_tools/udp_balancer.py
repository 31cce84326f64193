"""A real UDP load balancer for tests: nginx's stream module in front of several CoAP receivers.

nginx runs as a child process (one process, in the foreground) with its config, pid file, logs
and lock file in a test's scratch directory. Its error log is kept at ``info``, where nginx says
which upstream each new UDP session went to (``udp proxy ... connected to 127.0.0.1:PORT``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from polewatch.bench_uplink import udp_bound

DEBIAN_MODULES = Path("/usr/lib/nginx/modules")  # nginx-light + libnginx-mod-stream put it here
STREAM_MODULE = "ngx_stream_module.so"


class NginxUnavailable(RuntimeError):
    """No nginx here, or one without the stream module."""


def _build_info(nginx: str) -> str:
    done = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr  # nginx -V writes to stderr


def stream_module(nginx: str) -> Path | None:
    """The stream module to load (None: built into this nginx); raise if there is none."""
    info = _build_info(nginx)
    if re.search(r"--with-stream(\s|$)", info):
        return None  # built in, nothing to load
    found = re.search(r"--modules-path=(\S+)", info)
    for folder in (Path(found.group(1)) if found else DEBIAN_MODULES, DEBIAN_MODULES):
        if (folder / STREAM_MODULE).is_file():
            return folder / STREAM_MODULE
    raise NginxUnavailable(
        f"nginx has no stream module ({STREAM_MODULE}): "
        "apt-get install nginx-light libnginx-mod-stream"
    )


def find_nginx() -> tuple[str, Path | None]:
    """The nginx binary and its stream module; raise :class:`NginxUnavailable` without them."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        raise NginxUnavailable("nginx is not installed: apt-get install nginx-light "
                               "libnginx-mod-stream")  # fmt: skip
    return nginx, stream_module(nginx)


class UdpBalancer:
    """nginx balancing UDP datagrams sent to ``127.0.0.1:port`` over ``upstreams`` (ports).

    A client's datagrams (one source address and port) form a session that stays with one
    upstream until it is idle for ``idle_s``; new sessions go round robin. An upstream that fails
    once (its port refuses: the receiver is dead) gets no new sessions for ``fail_timeout_s``.
    A client of a dead upstream moves on when its session has timed out: CoAP's second
    retransmission (6 to 9 s after the first try) comes after ``idle_s`` and opens a new session.
    (nginx answers a datagram the dead upstream refused with an empty datagram, which aiocoap
    logs as unparsable and ignores.)

    Every answer of the upstream comes back to the client while the session lasts: a CoAP
    receiver answers a request that takes over 0.1 s with an empty ACK and then a separate
    response, so limiting a session to one answer (``proxy_responses 1``) would drop the
    response itself, and ``idle_s`` must be longer than a receiver may take to commit.
    """

    def __init__(
        self, work: Path, port: int, upstreams: Sequence[int], idle_s: float = 3.0,
        fail_timeout_s: float = 30.0,
    ) -> None:  # fmt: skip
        self.nginx, self.module = find_nginx()
        self.work, self.port, self.upstreams = work, port, list(upstreams)
        self.idle_s, self.fail_timeout_s = idle_s, fail_timeout_s
        self.conf = work / "nginx.conf"
        self.error_log = work / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The nginx.conf this balancer runs with."""
        servers = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout={self.fail_timeout_s:g}s;"
            for p in self.upstreams
        )
        load = f"load_module {self.module};\n" if self.module is not None else ""
        return f"""{load}daemon off;
master_process off;
worker_processes 1;
pid {self.work / "nginx.pid"};
lock_file {self.work / "nginx.lock"};
error_log {self.error_log} info;
events {{
    worker_connections 1024;
}}
stream {{
    upstream receivers {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port} udp;
        proxy_pass receivers;
        proxy_timeout {self.idle_s:g}s;
    }}
}}
"""

    def start(self, timeout_s: float = 30.0) -> UdpBalancer:
        """Start nginx; return once it listens."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config())
        # -e: the error log from the first line on (before the config names it)
        cmd = [self.nginx, "-p", str(self.work), "-e", str(self.error_log), "-c", str(self.conf)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not udp_bound(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop nginx (SIGTERM, then SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        """nginx's error log so far."""
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def sessions(self) -> Counter[int]:
        """How many sessions nginx has sent to each upstream port so far."""
        ports = re.findall(r"udp proxy \S+ connected to 127\.0\.0\.1:(\d+)", self.log())
        return Counter(int(p) for p in ports)
