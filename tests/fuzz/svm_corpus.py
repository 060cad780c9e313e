#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-made inputs of the SVM fuzzer's corpus (fuzz_svm.c) to
tests/fuzz/corpus/svm/: each function below encodes one operation exactly
as fuzz_svm.c decodes it (opcode, then its argument bytes).  Run it again
after changing the decoder:  python3 tests/fuzz/svm_corpus.py"""
import os
import struct


def u16(x): return struct.pack('<H', x)
def u32(x): return struct.pack('<I', x)


def run(s, k):          # pick_run: k in 1..64, or 512 (a 2 MiB block)
    return bytes([0 if k == 512 else 64 + k - 1]) + u16(s)


def mmap(k, prot, fixed=None):  # k 512, 1024 or 1..64; prot 0 RW, 3 R, 4 NONE
    b = {512: 0, 1024: 1}.get(k, 64 + k - 1)
    return bytes([0, b, prot, 0 if fixed is None else 1]) + u16(fixed or 0)


def munmap(s, k, whole=False): return bytes([1, int(whole)]) + run(s, k)


def mremap(how, s, t, d, extra=0):
    r = bytes([2, how]) + u16(s) + u16(t) + bytes([d - 1])
    return r + (bytes([extra]) if how in (1, 2) else b'')


def mprotect(s, k, p): return bytes([3, p]) + run(s, k)  # 0 RW 2 R 3 NONE
def dontneed(s, k): return bytes([4]) + run(s, k)


def cpu_write(page, off, n, seed):
    return bytes([5, 1]) + u16(page) + u16(off) + u16(n - 1) + bytes([seed])


def cpu_read(page, off, n):
    return bytes([5, 0]) + u16(page) + u16(off) + u16(n - 1)


def fill(v, s, k, pat): return bytes([7, v]) + u32(pat) + run(s, k)
def store(v, pg, off8, val): return bytes([8, v]) + u16(pg) + bytes([off8]) + u32(val)
def copy(v, s, k, d): return bytes([9, v]) + u16(d) + run(s, k)
def checksum(v, s, k): return bytes([10, v]) + run(s, k)
def prefetch(v, s, k, system): return bytes([11, v, int(system)]) + run(s, k)
def attr(v, b, s, k): return bytes([12, v, b]) + run(s, k)
def reclaim(s, k): return bytes([13]) + run(s, k)
def fork(): return bytes([14, 0])           # the first one forks


def child_read(page, off, n): return bytes([14, 0]) + cpu_read(page, off, n)[2:]
def child_write(page, off, n, seed): return bytes([14, 2]) + cpu_write(page, off, n, seed)[2:]
def child_exit(): return bytes([14, 3])
def evict(d, quarter_mib): return bytes([15, d, quarter_mib - 1])


def bo_map(v, slot, pages, vram, s, k, off, ro=False):
    return bytes([16, v, slot, (pages - 1) | (64 if vram else 0),
                  off << 1 | int(ro)]) + run(s, k)


def bo_unmap(v, s, k): return bytes([17, v, 0]) + run(s, k)
def bo_unmap_all(v, slot): return bytes([17, v, slot]) + run(0, 1)  # odd slot
def bo_write(d, slot, a, n): return bytes([18, d, slot, 1]) + u16(a) + u16(n - 1)
def bo_read(d, slot, a, n): return bytes([18, d, slot, 0]) + u16(a) + u16(n - 1)


# config byte: 1 linked, 2 access counters on, 4 VRAM 2 MiB (else 4)
INPUTS = {
    'basic': [0x01, mmap(16, 0), cpu_write(0, 100, 9000, 7),
              fill(0, 4, 4, 0xdeadbeef), checksum(1, 0, 16),
              cpu_read(0, 0, 12288), store(1, 2, 3, 0x1234),
              cpu_read(2, 0, 4096), checksum(0, 0, 16), copy(1, 0, 4, 8),
              checksum(0, 8, 4)],
    'munmap_reuse': [0x00, mmap(512, 0), fill(0, 0, 512, 0x01010101),
                     checksum(1, 0, 64), munmap(10, 20), checksum(0, 0, 64),
                     store(1, 15, 0, 5), fill(1, 5, 10, 7),
                     cpu_read(9, 0, 8192), mmap(20, 0, 10), checksum(0, 0, 64),
                     checksum(1, 0, 64), munmap(0, 1, True), checksum(0, 0, 1),
                     mmap(512, 0), checksum(1, 0, 512)],
    'mremap': [0x01, mmap(512, 0), fill(0, 0, 512, 0x02020202), mmap(8, 0),
               mremap(0, 0, 0, 12), checksum(1, 490, 22),
               mremap(1, 512, 0, 8, 0), mremap(1, 512, 0, 8, 1),
               mremap(2, 0, 1024, 30, 1), checksum(0, 1024, 64),
               mremap(2, 1024, 100, 5, 0), mremap(3, 100, 1500, 4),
               mremap(3, 100, 1500, 64), mremap(3, 2000, 10, 4),
               cpu_read(1500, 0, 12288), fill(1, 1500, 4, 9),
               checksum(0, 100, 64), mremap(3, 0, 2047, 2)],
    'mprotect_dontneed': [0x02, mmap(64, 0), fill(0, 0, 64, 0x03030303),
                          mprotect(8, 8, 2), fill(1, 0, 16, 0x04040404),
                          store(0, 9, 0, 1), checksum(0, 8, 8),
                          cpu_write(8, 0, 10, 1), mprotect(16, 4, 3),
                          checksum(1, 16, 4), cpu_read(16, 0, 8),
                          mprotect(0, 64, 0), dontneed(0, 32),
                          checksum(1, 0, 64), dontneed(100, 4),
                          mprotect(100, 4, 0), mprotect(0, 4, 0xf0),
                          mmap(4, 3), mmap(4, 4), checksum(0, 64, 8),
                          cpu_write(64, 0, 8, 1)],
    'fork': [0x01, mmap(32, 0), cpu_write(0, 0, 12000, 3),
             fill(0, 0, 8, 0x05050505), fork(), store(0, 1, 0, 42),
             child_read(0, 0, 12288), child_write(2, 0, 100, 9),
             fill(1, 0, 32, 0x06060606), child_read(0, 0, 12288),
             mmap(8, 0), child_exit(), fork(), child_read(1, 5, 12000),
             checksum(0, 0, 32)],
    'prefetch_attr_evict': [0x07, mmap(512, 0), mmap(512, 0),
                            attr(0, 1, 0, 512), prefetch(0, 0, 512, False),
                            fill(0, 0, 512, 0x07070707), attr(1, 2, 512, 512),
                            prefetch(1, 512, 512, False),
                            fill(1, 512, 64, 0x08), attr(0, 3, 0, 64),
                            attr(0, 7, 0, 64), attr(1, 0x2b, 0, 64),
                            prefetch(1, 0, 512, False), checksum(0, 512, 64),
                            evict(0, 4), evict(1, 4), checksum(1, 0, 64),
                            prefetch(0, 0, 64, True), reclaim(0, 512),
                            reclaim(600, 10), fill(0, 0, 64, 0x09),
                            reclaim(0, 64), checksum(1, 0, 64), evict(0, 2)],
    'bo_in_mirror': [0x01, mmap(64, 0), fill(0, 0, 64, 0x0a0a0a0a),
                     bo_map(0, 0, 16, False, 8, 16, 0),
                     bo_map(0, 2, 8, True, 40, 8, 0, ro=True),
                     bo_map(1, 0, 4, True, 0, 4, 0),
                     fill(0, 0, 64, 0x0b0b0b0b), fill(0, 0, 40, 0x0c0c0c0c),
                     checksum(0, 0, 64), checksum(1, 0, 64),
                     cpu_read(8, 0, 12288), bo_read(0, 0, 0, 12288),
                     bo_write(0, 2, 100, 5000), checksum(0, 40, 8),
                     prefetch(0, 0, 64, False), prefetch(0, 0, 64, True),
                     munmap(0, 64), checksum(0, 8, 16), store(0, 9, 0, 3),
                     bo_unmap(0, 10, 4), checksum(0, 8, 16),
                     bo_unmap_all(0, 1), mmap(64, 0, 0), checksum(0, 0, 64),
                     copy(1, 0, 4, 10), bo_unmap(1, 0, 4), checksum(1, 0, 4)],
    # regressions (docs/verification.md, "The SVM fuzzer")
    'regress-mremap-lru': [0x04, mmap(512, 0), attr(0, 0x28, 0, 512),
                           prefetch(0, 0, 512, False),
                           mremap(2, 0, 1024, 1, 0), evict(0, 4),
                           checksum(0, 1024, 64)],
    'regress-mremap-hole': [0x00, mmap(512, 0), mmap(64, 0),
                            cpu_write(0, 0, 12000, 1),
                            cpu_write(512, 0, 12000, 2),
                            prefetch(0, 0, 512, False),
                            prefetch(0, 512, 64, False), munmap(128, 64),
                            mremap(3, 512, 128, 64), cpu_read(128, 0, 8),
                            mremap(3, 100, 1024, 64), cpu_read(1024, 0, 12288),
                            checksum(1, 1024, 64)],
    # a refetch that failed kept the old pages with a fresh sequence; the
    # next PREFETCH's rewrite of the range mapped them again
    'regress-refetch-read-only': [0x00, mmap(59, 0, 624),
                                  prefetch(0, 619, 59, False),
                                  mprotect(629, 50, 2),
                                  prefetch(0, 512, 512, True),
                                  prefetch(0, 666, 50, True),
                                  store(0, 676, 0, 5)],
    'regress-refetch-freed': [0x00, mmap(48, 0, 2000),
                              prefetch(1, 2000, 48, True), dontneed(2004, 44),
                              mprotect(2007, 41, 3),
                              prefetch(1, 1980, 37, False),
                              prefetch(1, 1536, 512, True),
                              fill(1, 2007, 29, 0x71)],
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'svm')
for name, parts in INPUTS.items():
    with open(os.path.join(here, name + '.bin'), 'wb') as f:
        f.write(bytes([parts[0]]) + b''.join(parts[1:]))
