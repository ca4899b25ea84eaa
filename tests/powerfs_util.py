"""Mount tests/powerfs.py for a test, talk to its control socket, unmount it after."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))


class PowerFSMount:
    def __init__(self, base: str) -> None:
        self.base = base
        self.mnt = os.path.join(base, "mnt")
        self.ctl = os.path.join(base, "ctl.sock")
        os.makedirs(self.mnt, exist_ok=True)
        self.log = open(os.path.join(base, "powerfs.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "powerfs.py"), self.mnt, self.ctl],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (os.path.ismount(self.mnt) and os.path.exists(self.ctl)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("powerfs did not mount: " + self.log_text())
            time.sleep(0.05)
        assert self.request({"cmd": "ping"})["ok"]

    def log_text(self) -> str:
        self.log.flush()
        with open(os.path.join(self.base, "powerfs.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def request(self, req: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.ctl)
            f = s.makefile("rwb")
            f.write(json.dumps(req).encode() + b"\n")
            f.flush()
            resp = json.loads(f.readline())
        if not resp.get("ok"):
            raise RuntimeError(f"powerfs: {req}: {resp}")
        return resp

    def cut(self, out: str, mode: str = "drop", seed: int = 0) -> None:
        """Write into out what a power cut now would leave on the disk."""
        if os.path.exists(out):
            shutil.rmtree(out)
        self.request({"cmd": "cut", "out": out, "mode": mode, "seed": seed})

    def capture(self, out: str, files: bool = False, seed: int = 0) -> None:
        """From now on, write the cuts of a power loss just before every directory fsync (and every file
        fsync with files=True) into out/NNNN-MODE."""
        os.makedirs(out, exist_ok=True)
        self.request({"cmd": "capture", "out": out, "files": files, "seed": seed})

    def stop_capture(self) -> list:
        """Stop capturing; the cuts written since capture(), in order."""
        return self.request({"cmd": "capture", "out": None})["cuts"]

    def captured(self) -> int:
        """How many cuts capture() has written so far."""
        return self.request({"cmd": "captured"})["count"]

    def stats(self) -> dict:
        return self.request({"cmd": "stats"})

    def close(self) -> None:
        if os.path.ismount(self.mnt):
            r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
