"""The sandbox's first step inside bubblewrap, before the command (when root, or `--egress proxy`).

Usage: python -I -S inner.py [--userns] [--egress FD PORT[,PORT...]] -- CMD [ARGS...]

--userns (root): moves into a user namespace of its own, every uid and gid
mapped to itself, so root keeps its powers over its own files and processes
(apt, chown, an agent's own bubblewrap) while the mounts that hide the secrets
become locked: a mount namespace made from there cannot unmount them, and this
namespace has no power over the one that holds them. A forked child, still
outside, writes the maps (a process cannot map ranges into its own namespace).

--egress: listens on 127.0.0.1:PORT in the sandbox's network namespace for each
port and hands the listening sockets to cordon over the unix socket FD
(SCM_RIGHTS); cordon relays each connection to the same port outside.

Then becomes CMD. Standard library only (it runs with -I -S); the command
inherits no extra descriptor.
"""

import ctypes
import os
import socket
import sys

CLONE_NEWUSER = 0x10000000
FULL_RANGE = "0 0 4294967295\n"


def own_user_namespace() -> None:
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        code = 1
        try:
            if os.read(go_r, 1) == b"1":
                parent = os.getppid()
                for name in ("uid_map", "gid_map"):
                    with open(f"/proc/{parent}/{name}", "w") as f:
                        f.write(FULL_RANGE)
                code = 0
        finally:
            os._exit(code)
    os.close(go_r)
    libc = ctypes.CDLL(None, use_errno=True)
    ok = libc.unshare(CLONE_NEWUSER) == 0
    err = ctypes.get_errno()
    os.write(go_w, b"1" if ok else b"0")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    if not ok:
        sys.exit(f"cordon sandbox: cannot create a user namespace: {os.strerror(err)}")
    if status != 0:
        sys.exit("cordon sandbox: cannot map the user namespace's ids")


def egress_listeners(fd: int, ports: str) -> None:
    listeners = []
    for port in ports.split(","):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(port)))
        s.listen(128)
        listeners.append(s)
    channel = socket.socket(fileno=fd)
    socket.send_fds(channel, [ports.encode()], [s.fileno() for s in listeners])
    channel.close()
    for s in listeners:
        s.close()


def main(argv: list[str]) -> None:
    args = argv[1:]
    if "--" not in args or not args[args.index("--") + 1:]:
        sys.exit("usage: inner.py [--userns] [--egress FD PORT[,PORT...]] -- CMD [ARGS...]")
    opts, cmd = args[:args.index("--")], args[args.index("--") + 1:]
    if "--egress" in opts:
        i = opts.index("--egress")
        egress_listeners(int(opts[i + 1]), opts[i + 2])
    if "--userns" in opts:
        own_user_namespace()
    os.execvp(cmd[0], cmd)  # noqa: S606 (becoming the command is the point)


if __name__ == "__main__":
    main(sys.argv)
