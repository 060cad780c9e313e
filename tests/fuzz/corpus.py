#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-made inputs of the VM_BIND fuzzer's corpus (fuzz_core.c)
to tests/fuzz/corpus/: each function below encodes one operation exactly
as fuzz_core.c decodes it (opcode, then its argument bytes).  They run on
the process's memory (fuzz.corpus) and, with --det, on a model mm
(fuzz.det_replays).  Run it again after changing the decoder:
python3 tests/fuzz/corpus.py"""
import os
import struct


def u16(x): return struct.pack('<H', x)


def run(s, k): return u16(s) + bytes([k - 1])      # pick_run: k 1..64


def bo_create(d, slot, pages, place):   # place 0 VRAM, 1 system, 2 either
    return bytes([0, d, slot, pages - 1, place])


# bind ops, for bind(): each a (kind, run, args) byte string
def b_bo(s, k, slot, pg, ro=False): return bytes([0]) + run(s, k) + bytes([slot, pg, int(ro)])
def b_userptr(s, k, buf, pg, ro=False): return bytes([1]) + run(s, k) + bytes([buf, pg, int(ro)])
def b_null(s, k): return bytes([2]) + run(s, k)
def b_unmap(s, k): return bytes([3]) + run(s, k)
def b_prefetch(s, k, vram): return bytes([5]) + run(s, k) + bytes([int(vram)])


def bind(v, ops, queued=False):
    return bytes([1, v, len(ops) - 1, int(queued)]) + b''.join(ops)


def fill(v, s, k, pat): return bytes([4, v, pat]) + run(s, k)
def copy(v, s, k, d): return bytes([5, v]) + run(s, k) + u16(d)
def cpu_write(obj, val, off8): return bytes([6, obj]) + u16(val) + u16(off8)
def buf_remap(b): return bytes([7, b, 0])       # munmap + mmap FIXED: zeros
def buf_dontneed(b): return bytes([7, b, 1])
def buf_move(b, pg): return bytes([7, b, 2, pg])  # a page away and back
def evict(d, quarter_mib): return bytes([8, d, quarter_mib - 1])
def checksum(v, s, k): return bytes([9, v]) + run(s, k)
def dontneed(obj, pressure=False): return bytes([10, obj, 2 if pressure else 1])
def willneed(obj): return bytes([10, obj, 3])


BUF = 16        # the first user buffer's object index (NDEV * NBO)

INPUTS = {
    # userptr in both VMs, the CPU changing the memory under them
    'userptr': [
        bind(0, [b_userptr(0, 16, 0, 0)]),
        bind(1, [b_userptr(100, 16, 0, 8, ro=True)], queued=True),
        cpu_write(BUF, 0x1234, 5), fill(0, 0, 4, 0x33),
        checksum(1, 100, 16), checksum(0, 0, 16),
        buf_dontneed(0), checksum(0, 0, 16), checksum(1, 100, 16),
        cpu_write(BUF, 0x9999, 600), fill(0, 8, 8, 0x44),
        buf_remap(0), checksum(0, 0, 16), checksum(1, 100, 16),
        fill(0, 2, 6, 0x55), buf_move(0, 3), checksum(0, 0, 16),
        buf_move(0, 12), checksum(1, 100, 16),
        fill(1, 100, 4, 0x66),                  # read-only: -EIO
        copy(0, 0, 4, 8), checksum(0, 8, 4), checksum(1, 100, 4)],
    # queued userptr binds racing the CPU's changes, then kernels after
    'userptr_queued': [
        bind(0, [b_userptr(0, 64, 1, 0), b_userptr(64, 64, 2, 0)],
             queued=True),
        buf_remap(1), fill(0, 0, 64, 0x11),
        bind(0, [b_unmap(32, 16), b_userptr(32, 16, 3, 48)], queued=True),
        buf_dontneed(2), buf_move(3, 50), fill(0, 40, 40, 0x22),
        checksum(0, 0, 64), checksum(0, 64, 64),
        bind(1, [b_userptr(0, 64, 1, 0)], queued=True),
        checksum(1, 0, 64), buf_move(1, 7), cpu_write(BUF + 1, 7, 7 * 512),
        checksum(1, 0, 64), checksum(0, 0, 64)],
    # BOs and userptr side by side, VRAM pressure, purgeable BOs
    'userptr_bo': [
        bo_create(0, 0, 64, 2), bo_create(0, 1, 32, 0),
        bo_create(1, 0, 100, 1),
        bind(0, [b_bo(0, 64, 0, 0), b_userptr(64, 32, 0, 10),
                 b_bo(96, 32, 1, 0)]),
        bind(1, [b_bo(0, 64, 0, 20, ro=True), b_userptr(64, 64, 0, 0)],
             queued=True),
        fill(0, 0, 64, 0x77), fill(0, 64, 32, 0x78), copy(0, 0, 32, 200),
        evict(0, 4), checksum(0, 0, 64), checksum(0, 200, 32),
        dontneed(0, pressure=True), buf_dontneed(0), checksum(1, 64, 64),
        willneed(0), bind(0, [b_prefetch(0, 128, True)]),
        buf_move(0, 20), copy(1, 64, 16, 100), checksum(1, 100, 16),
        cpu_write(BUF, 0xbeef, 10 * 512 + 3), checksum(0, 64, 32)],
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
    for name, ops in INPUTS.items():
        with open(os.path.join(out, name + '.bin'), 'wb') as f:
            f.write(b''.join(ops))


if __name__ == '__main__':
    main()
