"""Run the whole site on one machine: web, control worker, a GPU worker (with --demo, two simulated hosts).

Started by `make run` / `make demo` after the virtualenv is ready. Every child runs in its own process
group; Ctrl-C (or any child dying) stops them all, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
VAR = Path(os.environ.get("AIFRED_VAR_DIR", ROOT / "var"))


def say(message: str) -> None:
    print(f"[aifred] {message}", flush=True)


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def manage(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True, env=env)


class Supervisor:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        # How each child was started, so a crashed one is started again: name -> (argv, env).
        self.commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        self.restarts: dict[str, list[float]] = {}
        self.gpu_hosts: list[str] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        say(f"starting {name}")
        process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
        self.children.append((name, process))
        self.commands[name] = (argv, env)

    def stop_all(self) -> None:
        for _name, process in self.children:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for _name, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _name, process in self.children:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop_servers()

    def stop_servers(self) -> None:
        """Stop the vLLM servers our GPU workers started.

        In production servers outlive their worker (a restarted worker adopts them); a local run
        ends whole, so nothing keeps a port or memory after Ctrl-C.
        """
        if not self.gpu_hosts:
            return
        sys.path.insert(0, str(ROOT))
        from launches.gpu.adopter import kill_marked_groups

        for host in self.gpu_hosts:
            kill_marked_groups(host, grace=10)
        self.record_stopped()

    def record_stopped(self) -> None:
        """Record the launches of our GPU hosts as stopped by this script: the history and the fleet
        are right the moment the stack is down (not "lost", nor "crashed" at the next start)."""
        hosts = sorted(set(self.gpu_hosts))
        if not hosts:
            return
        try:
            django_setup()
            from launches.models import Launch

            changed = Launch.objects.record_stack_stopped(
                hosts, "Stopped by the run script: the whole local stack was stopped (Ctrl-C or SIGTERM)."
            )
        except Exception as exc:  # the stack is down either way; say why the record is not
            say(f"could not record the stopped launches ({type(exc).__name__}: {exc})")
            return
        if changed:
            say(f"recorded {changed} launch{'es' if changed != 1 else ''} as stopped")

    def watch(self) -> int:
        """Start again any child that exits, waiting 1, 2, 4 ... up to 30 s if it keeps exiting."""
        while True:
            for position, (name, process) in enumerate(self.children):
                code = process.poll()
                if code is None:
                    continue
                now = time.monotonic()
                recent = [when for when in self.restarts.get(name, []) if now - when < 300] + [now]
                self.restarts[name] = recent
                wait = min(2 ** (len(recent) - 1), 30)
                say(f"{name} exited with code {code}; starting it again in {wait} s")
                time.sleep(wait)
                argv, env = self.commands[name]
                self.children[position] = (
                    name,
                    subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True),
                )
            time.sleep(0.5)


def django_setup() -> None:
    import django

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    django.setup()


def no_gpu_reason() -> str:
    """Why this machine shows no NVIDIA GPU (NVML's words), or "" when it has one."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from gpus.nvml import read_inventory_or_empty

    inventory = read_inventory_or_empty()
    return "" if inventory.gpus else (inventory.status or "NVML reports no GPU")


def ensure_redis(supervisor: Supervisor, url: str) -> None:
    if redis_answers(url):
        return
    parsed = urlparse(url)
    server = shutil.which("redis-server")
    if parsed.hostname not in {"127.0.0.1", "localhost", "::1"} or not server:
        sys.exit(
            f"Nothing answers at REDIS_URL={url}. Start Redis there (e.g. 'apt-get install redis-server' or "
            "'docker compose up -d redis'), or point REDIS_URL at a running Redis."
        )
    redis_dir = VAR / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    port = str(parsed.port or 6379)
    supervisor.start(
        "redis (private, under var/redis)",
        [server, "--port", port, "--bind", "127.0.0.1", "--dir", str(redis_dir), "--save", "60 1"],
    )
    for _ in range(50):
        if redis_answers(url):
            return
        time.sleep(0.1)
    sys.exit(f"Started redis-server on port {port} but it does not answer; see the output above.")


def port_is_free(address: str, port: int) -> bool:
    """Whether the site could listen on address:port now (a bind test, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _stop_as_on_ctrl_c(signum, frame) -> None:
    # A SIGTERM (systemd, a terminal closing) stops everything the same way Ctrl-C does.
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--demo", action="store_true", help="also start two simulated GPU hosts and seed data"
    )
    parser.add_argument("--bind", default=os.environ.get("AIFRED_BIND", "127.0.0.1:8000"))
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("DJANGO_SETTINGS_MODULE", "aifred_site.settings")
    env["AIFRED_SITE_PORT"] = args.bind.rpartition(":")[2]
    os.environ.update(env)

    address, _, port = args.bind.rpartition(":")
    if not port.isdigit() or not port_is_free(address or "127.0.0.1", int(port)):
        say(
            f"{args.bind} is already in use (another `make run`?) or not host:port. Stop what listens "
            "there, or run the site elsewhere: make run BIND=127.0.0.1:8080"
        )
        return 2

    supervisor = Supervisor()
    signal.signal(signal.SIGTERM, _stop_as_on_ctrl_c)
    # Ctrl-C stops everything even when this was started with SIGINT ignored (as a shell does for a
    # background job), so the one key a user knows always works.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ensure_redis(supervisor, env["REDIS_URL"])
        manage("migrate", "--noinput", "-v0", env=env)
        manage("ensure_admin", env=env)
        if args.demo:
            manage("seed_demo", "--no-worker-commands", env=env)
        supervisor.start(
            "web on http://" + args.bind, [PYTHON, "manage.py", "runserver", args.bind, "--noreload"], env
        )
        supervisor.start("control worker (with beat)", [PYTHON, "manage.py", "control_worker"], env)
        host = socket.gethostname().split(".")[0].lower()
        supervisor.start(f"GPU worker for {host}", [PYTHON, "manage.py", "gpu_worker", "--host", host], env)
        supervisor.gpu_hosts.append(host)
        if args.demo:
            django_setup()
            from launches.management.commands.seed_demo import DEMO_HOSTS, gpu_worker_env

            for name, cards, version, _port, port_range in DEMO_HOSTS:
                supervisor.start(
                    f"simulated GPU host {name}",
                    [PYTHON, "manage.py", "gpu_worker", "--host", name],
                    {**env, **gpu_worker_env(name, cards, version, port_range)},
                )
                supervisor.gpu_hosts.append(name)
        say(f"site at http://{args.bind}/admin/ — Ctrl-C stops everything")
        reason = "" if args.demo else no_gpu_reason()
        if reason:
            say(
                f"this machine has no GPU to launch on ({reason.rstrip('.')}). The site is up, and its "
                "GPU worker says so on the Fleet page; `make demo` shows the whole flow with two "
                "simulated GPU hosts."
            )
        return supervisor.watch()
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C or SIGTERM (a process-group kill reaches us more than once) must not cut the
        # clean-up short: the servers are stopped and recorded whatever arrives meanwhile.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping")
        supervisor.stop_all()


if __name__ == "__main__":
    sys.exit(main())
