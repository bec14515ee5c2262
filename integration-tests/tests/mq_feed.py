#!/usr/bin/env python3
"""A foreign sender for `mq-pair recv --raw`: plain libc calls through ctypes, no mq-pair code.

usage: mq_feed.py posix /NAME FILE CHUNK      mq_open(O_WRONLY) + mq_send per chunk
       mq_feed.py sysv  KEYFILE FILE CHUNK    ftok(KEYFILE, 'I') + msgget + msgsnd (mtype 1)
The queue is the receiver's: this waits (up to 10 s) for it to exist.
"""
import ctypes
import ctypes.util
import errno
import os
import sys
import time

api, name, path, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = open(path, "rb").read()
parts = [data[i:i + chunk] for i in range(0, len(data), chunk)]
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
deadline = time.time() + 10


def fail(what):
    sys.exit(f"mq_feed: {what}: {os.strerror(ctypes.get_errno())}")


if api == "posix":
    # glibc >= 2.34 has the queue calls in libc; older ones in librt.
    rt = libc if hasattr(libc, "mq_send") else ctypes.CDLL("librt.so.1", use_errno=True)
    rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    rt.mq_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint]
    while (q := rt.mq_open(name.encode(), os.O_WRONLY)) < 0:
        if ctypes.get_errno() != errno.ENOENT or time.time() > deadline:
            fail(f"mq_open({name})")
        time.sleep(0.01)
    for p in parts:
        if rt.mq_send(q, p, len(p), 0) != 0:
            fail("mq_send")
    rt.mq_close(q)
else:
    libc.ftok.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    while True:
        key = libc.ftok(name.encode(), ord("I"))
        q = libc.msgget(key, 0) if key != -1 else -1
        if q >= 0:
            break
        if time.time() > deadline:
            fail(f"msgget(ftok({name}))")
        time.sleep(0.01)
    for p in parts:
        # struct msgbuf { long mtype; char mtext[]; }
        buf = ctypes.create_string_buffer((1).to_bytes(8, sys.byteorder) + p)
        if libc.msgsnd(q, buf, len(p), 0) != 0:
            fail("msgsnd")
