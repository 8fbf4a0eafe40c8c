"""Run inside the sandbox's network namespace before the command (`cordon exec --egress proxy`).

Usage: python -I -S inner.py FD PORT[,PORT...] -- CMD [ARGS...]

Listens on 127.0.0.1:PORT in the sandbox for each port and hands the listening
sockets to cordon over the unix socket FD (SCM_RIGHTS); cordon relays each
connection to the same port outside. Then becomes CMD. Standard library only
(it runs with -I -S); the command inherits no extra descriptor.
"""

import os
import socket
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 5 or argv[3] != "--":
        sys.exit("usage: inner.py FD PORT[,PORT...] -- CMD [ARGS...]")
    fd, ports, cmd = int(argv[1]), argv[2], argv[4:]
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
    os.execvp(cmd[0], cmd)  # noqa: S606 (becoming the command is the point)


if __name__ == "__main__":
    main(sys.argv)
