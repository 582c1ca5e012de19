"""Several worker processes as one server (`serve.workers` > 1).

The supervisor binds the port, forks the workers (each loads its own model copy and accepts on the
shared socket), restarts one that dies, and stops them all on Ctrl-C/SIGTERM. Each worker also
listens on a private Unix socket, so the worker that receives an admin call (reload, canary) applies
it and then passes it to every other worker, and feedback for a request another worker answered
finds its way there. /metrics shows all workers (prometheus-client's multiprocess mode). The canary
set through the admin API is kept in the control folder, so a restarted worker takes it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)
TRAFFIC_FILE = "traffic.json"


class Siblings:
    """What one worker knows of the others: their private sockets and the shared secret."""

    def __init__(self, index: int, folder: Path, token: str, count: int):
        self.index, self.folder, self.token, self.count = index, folder, token, count

    def socket_path(self, index: int) -> Path:
        return self.folder / "sockets" / f"worker-{index}.sock"

    def trusted(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    async def broadcast(self, method: str, path: str, body: bytes) -> list[dict]:
        """Send an admin call to every other worker; what each answered."""
        answers = await asyncio.gather(*(self._call(i, method, path, body) for i in self.others()))
        return [{"worker": i, **answer} for i, answer in zip(self.others(), answers, strict=True)]

    async def feedback(self, items: list[dict]) -> tuple[int, list[str], list[dict]]:
        """Offer labels for requests this worker did not answer to the others, in turn."""
        accepted, rejected = 0, []
        for index in self.others():
            if not items:
                break
            answer = await self._call(index, "POST", "/feedback", json.dumps({"feedback": items}).encode())
            body = answer.get("body") or {}
            if answer.get("status") == 200 and isinstance(body, dict):
                accepted += int(body.get("accepted", 0))
                rejected += list(body.get("rejected", []))
                items = list(body.get("unknown", items))
        return accepted, rejected, items

    def others(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]

    def save_traffic(self, state: dict) -> None:
        tmp = self.folder / f".{TRAFFIC_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.folder / TRAFFIC_FILE)

    def saved_traffic(self) -> dict | None:
        path = self.folder / TRAFFIC_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    async def _call(self, index: int, method: str, path: str, body: bytes, timeout: float = 120) -> dict:
        """A minimal HTTP/1.1 call over the worker's Unix socket (Connection: close)."""
        from loopml.serve.app import INTERNAL

        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.socket_path(index))), 5)
        except (OSError, asyncio.TimeoutError) as exc:
            return {"status": None, "error": f"worker {index} is unreachable ({exc})"}
        try:
            head = (
                f"{method} {path} HTTP/1.1\r\nhost: worker\r\n{INTERNAL}: {self.token}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            return {"status": None, "error": f"worker {index} did not answer ({exc})"}
        finally:
            writer.close()
        status_line, _, rest = raw.partition(b"\r\n")
        _, _, payload = rest.partition(b"\r\n\r\n")
        try:
            status = int(status_line.split()[1])
            return {"status": status, "body": json.loads(payload or b"{}")}
        except (IndexError, ValueError):
            return {"status": None, "error": f"worker {index} answered {raw[:80]!r}"}


class Supervisor:
    """Binds the port, forks `serve.workers` workers, keeps them running, stops them together."""

    def __init__(self, settings, run_worker):
        self.settings = settings
        self.run_worker = run_worker  # (settings, sockets, siblings, started_at) -> None, in the child
        self.count = settings.serve.workers
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stopping = False

    def run(self) -> None:
        from loopml.serve.metrics import use_multiprocess

        folder = Path(tempfile.mkdtemp(prefix="loopml-serve-"))
        (folder / "sockets").mkdir()
        (folder / "metrics").mkdir()
        use_multiprocess(str(folder / "metrics"))  # before any worker creates a metric
        cfg = self.settings.serve
        listener = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((cfg.host, cfg.port))
        listener.listen(2048)
        listener.set_inheritable(True)
        started_at = time.time()
        token = secrets.token_hex(16)
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for index in range(self.count):
                self._spawn(index, listener, folder, token, started_at)
            while self.children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                except InterruptedError:
                    continue
                index = self.children.pop(pid, None)
                self._mark_dead(pid)
                if index is not None and not self.stopping:
                    logger.error("worker %d (pid %d) exited with status %d; starting it again", index, pid, status)
                    (Path(folder) / "sockets" / f"worker-{index}.sock").unlink(missing_ok=True)
                    self._spawn(index, listener, folder, token, started_at)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            listener.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _spawn(self, index: int, listener: socket.socket, folder: Path, token: str, started_at: float) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = index
            return
        code = 0
        try:  # the child: its own signal handling (uvicorn's), then serve until told to stop
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            private = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            path = folder / "sockets" / f"worker-{index}.sock"
            path.unlink(missing_ok=True)
            private.bind(str(path))
            private.listen(64)
            siblings = Siblings(index, folder, token, self.count)
            self.run_worker(self.settings, [listener, private], siblings, started_at)
        except BaseException:
            logger.exception("worker %d failed", index)
            code = 1
        finally:
            os._exit(code)

    def _stop(self, signum, frame) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    @staticmethod
    def _mark_dead(pid: int) -> None:
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)
