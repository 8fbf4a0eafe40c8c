"""A seccomp filter for the confined command: no typing into the terminal (`ioctl` TIOCSTI, TIOCLINUX).

The command shares cordon's terminal (Ctrl-C and job control must work), and on
kernels that still allow TIOCSTI (`dev.tty.legacy_tiocsti = 1`) it could push
characters into the terminal's input for the shell that reads it after cordon
exits: commands run outside the sandbox (bubblewrap's CVE-2017-5226). The
filter fails those two requests with EPERM and allows everything else. Classic
BPF, written out by hand (no libseccomp): x86_64 (with its i386 and x32 entry
points) and aarch64; other architectures pass unfiltered. bwrap loads it (`--seccomp FD`).
"""

from __future__ import annotations

import os
import struct

# linux/filter.h, linux/seccomp.h, linux/audit.h
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
RET_ALLOW, RET_EPERM = 0x7FFF0000, 0x00050000 | 1
ARCH_I386, ARCH_X86_64, ARCH_AARCH64 = 0x40000003, 0xC000003E, 0xC00000B7
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
NR, ARCH, ARG1 = 0, 4, 24          # offsets in struct seccomp_data (args[1]: its low 32 bits, little-endian)

PROGRAM = [
    (LD_W_ABS, 0, 0, ARCH),             # 0
    (JEQ_K, 2, 0, ARCH_I386),           # 1 -> 4
    (JEQ_K, 3, 0, ARCH_X86_64),         # 2 -> 6
    (JEQ_K, 5, 10, ARCH_AARCH64),       # 3 -> 9, else allow
    (LD_W_ABS, 0, 0, NR),               # 4: i386
    (JEQ_K, 5, 8, 54),                  # 5 ioctl -> 11, else allow
    (LD_W_ABS, 0, 0, NR),               # 6: x86_64
    (JEQ_K, 3, 0, 16),                  # 7 ioctl -> 11
    (JEQ_K, 2, 5, 0x40000000 | 514),    # 8 x32 ioctl -> 11, else allow
    (LD_W_ABS, 0, 0, NR),               # 9: aarch64
    (JEQ_K, 0, 3, 29),                  # 10 ioctl -> 11, else allow
    (LD_W_ABS, 0, 0, ARG1),             # 11: the request
    (JEQ_K, 2, 0, TIOCSTI),             # 12 -> deny
    (JEQ_K, 1, 0, TIOCLINUX),           # 13 -> deny
    (RET_K, 0, 0, RET_ALLOW),           # 14
    (RET_K, 0, 0, RET_EPERM),           # 15
]


def program() -> bytes:
    """The filter as `struct sock_filter[]` (what bwrap's --seccomp reads)."""
    return b"".join(struct.pack("=HBBI", *ins) for ins in PROGRAM)


def filter_fd() -> int:
    """A descriptor to read the filter from, for bwrap --seccomp (inheritable; the caller closes it)."""
    r, w = os.pipe()
    os.write(w, program())               # 128 bytes: far below a pipe's buffer
    os.close(w)
    os.set_inheritable(r, True)
    return r
