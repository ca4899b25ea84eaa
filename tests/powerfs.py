"""powerfs: a FUSE filesystem, owned by the test suite, that knows what a power cut would leave.

It holds every file in memory and serves it like any filesystem (read, write, mmap, truncate,
fallocate, rename, unlink, directories), and beside that it keeps what the disk is *promised* to hold:
- a file's data and size as they were at its last fsync or fdatasync;
- a directory's entries as they were at its last fsync.
Everything else (writes, truncations and directory changes since then) is pending.

A *cut* writes the state a power cut would leave into a real directory, without disturbing the mounted
filesystem, so a test can take several cuts while a writer runs, then open each cut with pylsm:
- mode "drop": only what was made durable (what LazyFS keeps at a cut);
- mode "keep": everything the filesystem has been told (what a kill -9 of the process keeps);
- mode "tear": what was made durable plus a random part of what is pending: each pending write reaches
  the disk in 512-byte sectors independently (kept, lost, or for a write that overwrote nothing durable,
  left as zeros), each pending truncation happens or not, and each directory keeps a random prefix of
  its pending entry changes (a journalling filesystem commits them in order);
- mode "unordered": as "tear", but each pending directory change lands or not on its own (a rename
  whole), as on filesystems that do not order metadata updates between fsyncs;
- mode "reordered": file data as in "drop"; of the pending directory changes, every rename and removal
  lands and no new name does: the worst order, in which a name is pointed at a file whose own entry
  never reached the disk.

Cuts can also be taken automatically: with "capture" on, a "drop", a "tear" and a "reordered" cut are
written just before every directory fsync (and, with files=True, every file fsync) is applied: the
moments an engine's ordering mistakes show.

The oracle is independent of the engine: it sees only the system calls the kernel passes on. Data
written through a shared mmap reaches it when the kernel writes the dirty pages back, which an fsync
or fdatasync of the file forces before the FSYNC request arrives, so a WAL kept in a mapping is judged
by the same rule as one written with pwrite.

Run:  python tests/powerfs.py MOUNTPOINT CONTROL_SOCKET
The control socket takes one JSON object per line and answers with one:
  {"cmd": "cut", "out": DIR, "mode": "drop"|"keep"|"tear", "seed": N}  -> {"ok": true, "files": N}
  {"cmd": "capture", "out": DIR, "files": false, "seed": N}          -> {"ok": true}
  {"cmd": "capture", "out": null}                  (stop) -> {"ok": true, "cuts": [dir, ...]}
  {"cmd": "captured"}                                  -> {"ok": true, "count": cuts so far}
  {"cmd": "stats"}                                                     -> {"ok": true, "fsyncs": ..}
  {"cmd": "ping"}                                                      -> {"ok": true}
tests/powerfs_util.py mounts it for a test and unmounts it after.
"""
from __future__ import annotations

import errno
import json
import os
import random
import socket
import stat
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import mfusepy as fuse

SECTOR = 512


class Node:
    __slots__ = ("ino", "mode", "nlink", "mtime")

    def __init__(self, ino: int, mode: int) -> None:
        self.ino = ino
        self.mode = mode
        self.nlink = 1
        self.mtime = time.time()


class File(Node):
    __slots__ = ("data", "durable", "pending")

    def __init__(self, ino: int, mode: int) -> None:
        super().__init__(ino, stat.S_IFREG | mode)
        self.data = bytearray()
        self.durable = b""  # content (and so size) at the last fsync
        # Since then, in order: ("w", offset, bytes) and ("t", new_size).
        self.pending: List[tuple] = []

    def sync(self) -> None:
        if self.pending:
            self.durable = bytes(self.data)
            self.pending = []

    def torn(self, rnd: random.Random) -> bytes:
        """The content after a cut that tears the pending changes."""
        out = bytearray(self.durable)
        for op in self.pending:
            if op[0] == "t":
                if rnd.random() < 0.5:
                    _resize(out, op[1])
                continue
            _, off, data = op
            end = off + len(data)
            start = off
            while start < end:
                stop = min((start // SECTOR + 1) * SECTOR, end)
                fate = rnd.random()
                if fate < 0.45:  # this sector reached the disk
                    if len(out) < stop:
                        _resize(out, stop)
                    out[start:stop] = data[start - off:stop - off]
                elif fate < 0.55 and len(out) < stop:
                    # the file grew on disk but the data did not land: zeros
                    _resize(out, stop)
                start = stop
        return bytes(out)


class Dir(Node):
    __slots__ = ("entries", "durable", "pending")

    def __init__(self, ino: int, mode: int) -> None:
        super().__init__(ino, stat.S_IFDIR | mode)
        self.nlink = 2
        self.entries: Dict[str, Node] = {}
        self.durable: Dict[str, Node] = {}  # entries at the last fsync of this directory
        self.pending: List[tuple] = []  # ("set", name, node) / ("del", name) since then

    def set(self, name: str, node: Node) -> None:
        self.entries[name] = node
        self.pending.append(("set", name, node))

    def delete(self, name: str) -> None:
        del self.entries[name]
        self.pending.append(("del", name))

    def sync(self) -> None:
        self.durable = dict(self.entries)
        self.pending = []

    def view(self, mode: str, rnd: random.Random) -> Dict[str, Node]:
        """The entries after a cut."""
        if mode == "keep":
            return dict(self.entries)
        out = dict(self.durable)
        if mode == "unordered":
            landed = [op for op in self.pending if rnd.random() < 0.5]
        elif mode == "reordered":
            landed = [op for op in self.pending if op[0] != "set"]
        elif mode == "tear" and self.pending:
            landed = self.pending[:rnd.randint(0, len(self.pending))]
        else:
            landed = []
        for op in landed:
            if op[0] == "set":
                out[op[1]] = op[2]
            elif op[0] == "del":
                out.pop(op[1], None)
            else:  # ("rename", old, new, node): one journal entry, so all or nothing
                out.pop(op[1], None)
                out[op[2]] = op[3]
        return out


def _resize(buf: bytearray, size: int) -> None:
    if size < len(buf):
        del buf[size:]
    else:
        buf.extend(bytes(size - len(buf)))


def _fail(code: int):
    raise fuse.FuseOSError(code)


class PowerFS(fuse.Operations):
    use_ns = True

    def __init__(self) -> None:
        self.mu = threading.RLock()
        self.next_ino = 2
        self.root = Dir(1, 0o755)
        self.root.sync()
        self.fds: Dict[int, Node] = {}
        self.next_fh = 1
        self.counts = {"fsync": 0, "fdatasync": 0, "fsyncdir": 0, "write": 0, "cut": 0}
        self.capture: Optional[dict] = None  # {"out", "files", "rnd", "cuts"} while capturing

    def _before_sync(self, is_dir: bool) -> None:
        """With capture on: the cuts of a power loss just before this sync."""
        c = self.capture
        if c is None or not (is_dir or c["files"]):
            return
        for mode in ("drop", "tear", "reordered"):
            out = os.path.join(c["out"], "%04d-%s" % (len(c["cuts"]), mode))
            self.cut(out, mode, c["rnd"].randrange(1 << 30))
            c["cuts"].append(out)

    # ---- paths and handles ----

    def _lookup(self, path: str) -> Node:
        node: Node = self.root
        for part in path.split("/"):
            if not part:
                continue
            if not isinstance(node, Dir) or part not in node.entries:
                _fail(errno.ENOENT)
            node = node.entries[part]
        return node

    def _parent(self, path: str) -> Tuple[Dir, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self._lookup(head or "/")
        if not isinstance(parent, Dir):
            _fail(errno.ENOTDIR)
        return parent, name

    def _node(self, path: Optional[str], fh: Optional[int]) -> Node:
        if fh and fh in self.fds:
            return self.fds[fh]
        if path is None:
            _fail(errno.EBADF)
        return self._lookup(path)

    def _new_ino(self) -> int:
        self.next_ino += 1
        return self.next_ino

    def _handle(self, node: Node) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.fds[fh] = node
        return fh

    # ---- attributes ----

    def getattr(self, path, fh=None):
        with self.mu:
            node = self._node(path, fh)
            ns = int(node.mtime * 1e9)
            size = len(node.data) if isinstance(node, File) else 4096
            return {"st_mode": node.mode, "st_ino": node.ino, "st_nlink": node.nlink, "st_size": size,
                    "st_blocks": (size + 511) // 512, "st_blksize": 4096, "st_uid": os.getuid(),
                    "st_gid": os.getgid(), "st_atime": ns, "st_mtime": ns, "st_ctime": ns}

    def chmod(self, path, mode):
        with self.mu:
            node = self._lookup(path)
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
            return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        with self.mu:
            self._lookup(path).mtime = time.time()
            return 0

    def statfs(self, path):
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 22, "f_bfree": 1 << 21,
                "f_bavail": 1 << 21, "f_files": 1 << 20, "f_ffree": 1 << 19, "f_namemax": 255}

    def access(self, path, amode):
        with self.mu:
            self._lookup(path)
            return 0

    # ---- directories ----

    def mkdir(self, path, mode):
        with self.mu:
            parent, name = self._parent(path)
            if name in parent.entries:
                _fail(errno.EEXIST)
            parent.set(name, Dir(self._new_ino(), mode & 0o7777))
            parent.nlink += 1
            return 0

    def _remove(self, path: str, is_dir: bool) -> None:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            _fail(errno.ENOENT)
        if isinstance(node, Dir) != is_dir:
            _fail(errno.EISDIR if isinstance(node, Dir) else errno.ENOTDIR)
        if isinstance(node, Dir) and node.entries:
            _fail(errno.ENOTEMPTY)
        parent.delete(name)
        if is_dir:
            parent.nlink -= 1
        else:
            node.nlink -= 1

    def rmdir(self, path):
        with self.mu:
            self._remove(path, True)
            return 0

    def opendir(self, path):
        with self.mu:
            node = self._lookup(path)
            if not isinstance(node, Dir):
                _fail(errno.ENOTDIR)
            return self._handle(node)

    def readdir(self, path, fh):
        with self.mu:
            node = self._node(path, fh)
            if not isinstance(node, Dir):
                _fail(errno.ENOTDIR)
            return [".", ".."] + list(node.entries)

    def releasedir(self, path, fh):
        with self.mu:
            self.fds.pop(fh, None)
            return 0

    def fsyncdir(self, path, datasync, fh):
        with self.mu:
            node = self._node(path, fh)
            self._before_sync(True)
            if isinstance(node, Dir):
                node.sync()
            self.counts["fsyncdir"] += 1
            return 0

    # ---- files ----

    def create(self, path, mode, fi=None):
        with self.mu:
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if node is None:
                node = File(self._new_ino(), mode & 0o7777)
                parent.set(name, node)
            elif not isinstance(node, File):
                _fail(errno.EISDIR)
            return self._handle(node)

    def open(self, path, flags):
        with self.mu:
            node = self._lookup(path)
            if isinstance(node, Dir) and flags & (os.O_WRONLY | os.O_RDWR):
                _fail(errno.EISDIR)
            if isinstance(node, File) and flags & os.O_TRUNC:
                self._truncate(node, 0)
            return self._handle(node)

    def release(self, path, fh):
        with self.mu:
            self.fds.pop(fh, None)
            return 0

    def flush(self, path, fh):
        return 0

    def read(self, path, size, offset, fh):
        with self.mu:
            node = self._node(path, fh)
            if not isinstance(node, File):
                _fail(errno.EISDIR)
            return bytes(node.data[offset:offset + size])

    def write(self, path, data, offset, fh):
        with self.mu:
            node = self._node(path, fh)
            if not isinstance(node, File):
                _fail(errno.EISDIR)
            data = bytes(data)
            end = offset + len(data)
            if len(node.data) < end:
                _resize(node.data, end)
            node.data[offset:end] = data
            node.pending.append(("w", offset, data))
            node.mtime = time.time()
            self.counts["write"] += 1
            return len(data)

    def _truncate(self, node: File, length: int) -> None:
        if length != len(node.data):
            _resize(node.data, length)
            node.pending.append(("t", length))
        node.mtime = time.time()

    def truncate(self, path, length, fh=None):
        with self.mu:
            node = self._node(path, fh)
            if not isinstance(node, File):
                _fail(errno.EISDIR)
            self._truncate(node, length)
            return 0

    def fallocate(self, path, mode, offset, size, fh):
        with self.mu:
            node = self._node(path, fh)
            if not isinstance(node, File):
                _fail(errno.EISDIR)
            if mode != 0:  # only the plain form: allocate, and grow the file
                _fail(errno.EOPNOTSUPP)
            if offset + size > len(node.data):
                self._truncate(node, offset + size)
            return 0

    def fsync(self, path, datasync, fh):
        with self.mu:
            node = self._node(path, fh)
            self._before_sync(isinstance(node, Dir))
            node.sync()  # a file's data, or a directory's entries
            self.counts["fdatasync" if datasync else "fsync"] += 1
            return 0

    def unlink(self, path):
        with self.mu:
            self._remove(path, False)
            return 0

    def rename(self, old, new):
        with self.mu:
            oparent, oname = self._parent(old)
            nparent, nname = self._parent(new)
            node = oparent.entries.get(oname)
            if node is None:
                _fail(errno.ENOENT)
            target = nparent.entries.get(nname)
            if target is not None and isinstance(target, Dir) != isinstance(node, Dir):
                _fail(errno.EISDIR if isinstance(target, Dir) else errno.ENOTDIR)
            if isinstance(target, Dir) and target.entries:
                _fail(errno.ENOTEMPTY)
            if oparent is nparent:
                # One directory: the change is one journal entry, so a torn cut never sees the new name
                # without the old one gone.
                del oparent.entries[oname]
                oparent.entries[nname] = node
                oparent.pending.append(("rename", oname, nname, node))
            else:
                oparent.delete(oname)
                nparent.set(nname, node)
            return 0

    # ---- the cut ----

    def cut(self, out: str, mode: str, seed: int) -> int:
        with self.mu:
            rnd = random.Random(seed)
            count = 0
            os.makedirs(out, exist_ok=True)
            stack: List[Tuple[Dir, str]] = [(self.root, out)]
            while stack:
                d, where = stack.pop()
                for name, node in sorted(d.view(mode, rnd).items(), key=lambda kv: kv[0]):
                    target = os.path.join(where, name)
                    if isinstance(node, Dir):
                        os.makedirs(target, exist_ok=True)
                        stack.append((node, target))
                        continue
                    if mode == "keep":
                        content = bytes(node.data)
                    elif mode in ("drop", "reordered"):
                        content = node.durable
                    else:
                        content = node.torn(rnd)
                    with open(target, "wb") as f:
                        f.write(content)
                    count += 1
            self.counts["cut"] += 1
            return count


def serve_control(fs: PowerFS, sock_path: str) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    srv.bind(sock_path)
    srv.listen(4)

    def client(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    req = json.loads(line)
                    if req["cmd"] == "cut":
                        n = fs.cut(req["out"], req.get("mode", "drop"), int(req.get("seed", 0)))
                        resp = {"ok": True, "files": n}
                    elif req["cmd"] == "capture":
                        with fs.mu:
                            done = fs.capture["cuts"] if fs.capture else []
                            fs.capture = None
                            if req.get("out"):
                                fs.capture = {"out": req["out"], "files": bool(req.get("files")),
                                              "rnd": random.Random(int(req.get("seed", 0))), "cuts": []}
                        resp = {"ok": True, "cuts": done}
                    elif req["cmd"] == "captured":
                        with fs.mu:
                            resp = {"ok": True, "count": len(fs.capture["cuts"]) if fs.capture else 0}
                    elif req["cmd"] == "stats":
                        with fs.mu:
                            resp = dict(fs.counts, ok=True)
                    elif req["cmd"] == "ping":
                        resp = {"ok": True}
                    else:
                        resp = {"ok": False, "error": "unknown command"}
                except Exception as e:  # report, keep serving
                    resp = {"ok": False, "error": repr(e)}
                f.write(json.dumps(resp).encode() + b"\n")
                f.flush()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=client, args=(conn,), daemon=True).start()


def main(argv: List[str]) -> None:
    mountpoint, sock_path = argv[1], argv[2]
    fs = PowerFS()
    threading.Thread(target=serve_control, args=(fs, sock_path), daemon=True).start()
    fuse.FUSE(fs, mountpoint, foreground=True, nothreads=False, hard_remove=True, default_permissions=False,
              attr_timeout=0, entry_timeout=0, negative_timeout=0)


if __name__ == "__main__":
    main(sys.argv)
