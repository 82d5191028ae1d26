"""`make run`: every Parley process in the foreground, logs prefixed; Ctrl-C stops them all."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from devenv import SERVICES, dev_env

BIN = Path(sys.executable).parent
COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m"]
RESET = "\033[0m"


def pump(name: str, color: str, stream: object) -> None:
    width = max(len(n) for n in SERVICES) - len("parley-")
    label = (
        f"{color}{name.removeprefix('parley-'):<{width}}{RESET} | " if sys.stdout.isatty() else f"{name} | "
    )
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(label + line.decode(errors="replace"))
        sys.stdout.flush()


def main() -> int:
    env = dev_env()
    env.setdefault("PARLEY_LOG_FORMAT", "console")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print("\nstopping Parley (SIGTERM to every process)...", flush=True)
        for proc in processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for i, (name, port) in enumerate(SERVICES.items()):
        # /metrics has a port of its own: the API's port plus 1000 (ingest's at :9080)
        proc_env = {**env, "PARLEY_HTTP_PORT": str(port), "PARLEY_METRICS_PORT": str(port + 1000)}
        # the sandbox takes its address as arguments; the services read PARLEY_HTTP_PORT
        argv = [str(BIN / name), "--port", str(port)] if name == "parley-sandbox" else [str(BIN / name)]
        proc = subprocess.Popen(
            argv,
            env=proc_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches this script, which stops them in order
        )
        processes[name] = proc
        threading.Thread(target=pump, args=(name, COLORS[i % len(COLORS)], proc.stdout), daemon=True).start()
    print(
        "Parley is starting: ingest :8080, onboarding :8081, policy :8082, routing :8083, "
        "normalizer :8084, reports :8085, provider sandbox :8090; each /metrics at its port + 1000. "
        "Try `make demo` in another terminal. Ctrl-C stops.",
        flush=True,
    )
    while not stopping:
        for name, proc in processes.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the rest", flush=True)
                stop()
                break
        time.sleep(0.5)
    deadline = time.monotonic() + 30
    for proc in processes.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    print("all Parley processes stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
