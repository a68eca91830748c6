"""Start the GPU worker of one host: a Celery worker on ``gpu.<host>`` with a threads pool.

Threads, not processes: the servers, their cancel events and the state file live in this one
process, and a stop must be served while a launch task is waiting for its server. The pool has one
thread per GPU (one launch at a time per GPU) plus two, so that stops always find a free thread.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from launches.gpu import forbid_django


def main(argv: list[str] | None = None) -> int:
    forbid_django()
    parser = argparse.ArgumentParser(
        prog="python -m launches.gpu",
        description="Run the GPU worker of this host (needs REDIS_URL; no database).",
    )
    parser.add_argument("--host", default=os.environ.get("AIFRED_HOST"), help="this host's name in the site")
    parser.add_argument("--loglevel", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not args.host:
        parser.error("give --host NAME (or set AIFRED_HOST); the worker consumes the queue gpu.NAME")

    # Imported after the guard, so that nothing they import can bring Django in unnoticed.
    from launches.gpu.app import app
    from launches.gpu.config import WorkerConfig
    from launches.gpu.runtime import HostRuntime, set_runtime

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = WorkerConfig.from_env(args.host)

    def send(task_name: str, task_args: list, expires: float | None = None) -> None:
        from launches.gpu.app import control_queue

        app.send_task(task_name, args=task_args, queue=control_queue(), expires=expires)

    runtime = HostRuntime(config, send)
    set_runtime(runtime)
    runtime.start()
    gpus = len(runtime.inventory().gpus)
    logging.getLogger("aifred.gpu").info(
        "GPU worker of %s: %d GPU(s)%s, vLLM %s, state in %s",
        args.host,
        gpus,
        " (simulated)" if runtime.simulated else "",
        runtime.vllm_version or "unknown",
        config.state_dir,
    )
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={max(gpus, 1) + 2}",
                f"--queues=gpu.{args.host}",
                f"--hostname=gpu@{args.host}",
                f"--loglevel={args.loglevel}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        runtime.shutdown()
    return 0


# Nothing the GPU worker needs, and the database URL must not reach a GPU host's processes.
DROPPED_ENV = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY")


def hand_over(argv: list[str]) -> int:
    """``manage.py gpu_worker ...``: run the worker without Django, the database settings dropped."""
    for name in DROPPED_ENV:
        os.environ.pop(name, None)
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
