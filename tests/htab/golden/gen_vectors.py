#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the crafted spapr/htab record vectors (*.rec) and vectors.list.
# A .rec file is a sequence of records: u8 record_type (1 START, 2 PART,
# 3 END, anything else is passed through), be32 payload length, payload.
# The same container is the fuzz target's input format, so these files also
# seed fuzz/corpus/htab/. Run from this directory; outputs are committed.
import struct

START, PART, END = 1, 2, 3
SLOTS18 = 1 << 14

def rec(t, payload):
    return struct.pack('>BI', t, len(payload)) + payload

def hdr(v):
    return struct.pack('>I', v)

def chunk(index, entries, n_invalid=0, n_valid=None):
    nv = len(entries) if n_valid is None else n_valid
    return struct.pack('>IHH', index, nv, n_invalid) + b''.join(
        struct.pack('>QQ', v, r) for v, r in entries)

END_MARK = struct.pack('>IHH', 0, 0, 0)
E1 = (0x4000000012345f85 | 0x10, 0x0000000001230190)  # valid, bolted, large
E2 = (0x4000000012346005, 0x0000000004560194)

def body(*chunks):
    return hdr(0) + b''.join(chunks) + END_MARK

vectors = [
    # name, records, expected code, what it proves
    ('ok-start18-end', [rec(START, hdr(18)), rec(END, body(chunk(3, [E1, E2])))],
     'HM_OK', 'START then END with one chunk'),
    ('ok-last-slot', [rec(START, hdr(18)),
                      rec(PART, body(chunk(SLOTS18 - 1, [E1]))),
                      rec(END, body(chunk(SLOTS18 - 4, [E2, E2], 2)))],
     'HM_OK', 'chunks ending exactly at the last slot are valid'),
    ('ok-kvm-first-pass', [rec(START, hdr(18)),
                           rec(PART, body(chunk(0, [E1, E2], 6), chunk(8, [E2], 7))),
                           rec(END, body())],
     'HM_OK', 'first pass with invalid runs (KVM HTAB fd style)'),
    ('ok-hv-bit', [rec(START, hdr(18)), rec(END, body(chunk(9, [(E1[0] | 0x40, E1[1])])))],
     'HM_OK', 'bit 0x40 on the wire is accepted and cleared on load'),
    ('ok-resize', [rec(START, hdr(18)), rec(PART, body(chunk(1, [E1]))),
                   rec(PART, hdr(19)), rec(PART, body(chunk(SLOTS18 * 2 - 1, [E2]))),
                   rec(END, body())],
     'HM_OK', 'a non-zero PART header is a new zeroed table of that shift'),
    ('ok-nohpt', [rec(START, hdr(0xffffffff)), rec(PART, hdr(0xffffffff)),
                  rec(END, hdr(0xffffffff))],
     'HM_OK', 'no HPT (radix guest)'),
    ('err-part-before-start', [rec(PART, body(chunk(0, [E1])))],
     'HM_E_FORMAT', 'chunks before START'),
    ('err-start-zero', [rec(START, hdr(0))], 'HM_E_FORMAT', 'START header 0'),
    ('err-start-shift-low', [rec(START, hdr(17))], 'HM_E_RANGE', 'htab_shift below 18'),
    ('err-start-shift-high', [rec(START, hdr(37))], 'HM_E_RANGE', 'htab_shift above 36'),
    ('err-start-truncated', [rec(START, b'\x00\x12')], 'HM_E_TRUNCATED', 'START header cut'),
    ('err-second-start', [rec(START, hdr(18)), rec(START, hdr(18))],
     'HM_E_FORMAT', 'two START records'),
    ('err-record-type', [rec(START, hdr(18)), rec(4, body())], 'HM_E_FORMAT',
     'FULL is not a record type of this section'),
    ('err-chunk-past-end', [rec(START, hdr(18)), rec(PART, body(chunk(SLOTS18 - 1, [E1, E2])))],
     'HM_E_RANGE', 'index + n_valid one past the last slot'),
    ('err-invalid-past-end', [rec(START, hdr(18)),
                              rec(PART, body(chunk(SLOTS18 - 2, [E1], 2)))],
     'HM_E_RANGE', 'index + n_valid + n_invalid one past the last slot'),
    ('err-index-wrap', [rec(START, hdr(18)), rec(PART, body(chunk(0xffffffff, [E1])))],
     'HM_E_RANGE', 'index near 2^32: 32-bit arithmetic would wrap to 0'),
    ('err-index-wrap-invalid', [rec(START, hdr(18)),
                                rec(PART, body(chunk(0xfffffff0, [], 0x10)))],
     'HM_E_RANGE', 'index + n_invalid == 2^32 wraps in 32 bits'),
    ('err-entry-truncated', [rec(START, hdr(18)),
                             rec(PART, hdr(0) + chunk(5, [E1, E2])[:8 + 24])],
     'HM_E_TRUNCATED', 'payload ends inside an entry'),
    ('err-endmark-missing', [rec(START, hdr(18)), rec(PART, hdr(0) + chunk(5, [E1]))],
     'HM_E_TRUNCATED', 'payload ends before the endmark'),
    ('err-nohpt-then-chunks', [rec(START, hdr(0xffffffff)), rec(PART, body(chunk(0, [E1])))],
     'HM_E_FORMAT', 'no-HPT header mixed with chunks'),
    ('err-invalid-in-valid-run', [rec(START, hdr(18)),
                                  rec(PART, body(chunk(0, [E1, (E2[0] & ~1, E2[1])])))],
     'HM_E_FORMAT', 'an entry without the valid bit inside a valid run'),
    ('err-part-shift-high', [rec(START, hdr(18)), rec(PART, hdr(40))],
     'HM_E_RANGE', 'resize header above the stream limit'),
    ('ok-empty-chunk', [rec(START, hdr(18)), rec(PART, body(chunk(7, [])))],
     'HM_OK', 'a chunk with no entries and a non-zero index is a no-op, as in QEMU\'s loader'),
    ('err-empty-chunk-past-end', [rec(START, hdr(18)), rec(PART, body(chunk(16385, [])))],
     'HM_E_RANGE', 'an empty chunk still has its index range-checked, as in QEMU'),
    ('err-trailing-bytes', [rec(START, hdr(18)), rec(END, body() + b'\x00')],
     'HM_E_FORMAT', 'bytes after the endmark inside the record'),
]

with open('vectors.list', 'w') as lst:
    lst.write('# file expected-code description (generated by gen_vectors.py)\n')
    for name, recs, code, what in vectors:
        with open(name + '.rec', 'wb') as f:
            f.write(b''.join(recs))
        lst.write('%s.rec %s %s\n' % (name, code, what))
