#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Regenerates the seed corpus of fuzz/fuzz_stream.c (files not starting with
# '.'): valid streams over the target's sections (fz/live, spapr, hptmig/verify,
# fz/dev) at several versions, and a few known-bad ones. Optional argument:
# a decompressed real QEMU fixture, whose head and vmdesc become seeds too.
import json, os, struct, sys

D = os.path.dirname(os.path.abspath(__file__))
be32 = lambda v: struct.pack('>I', v & 0xffffffff)
be16 = lambda v: struct.pack('>H', v)
be64 = lambda v: struct.pack('>Q', v & 0xffffffffffffffff)

def header(machine=b'pseries-fz'):
    return b'QEVM' + be32(3) + (b'\x07' + be32(len(machine)) + machine if machine is not None else b'')

def start(typ, sid, name, inst, ver):
    return bytes([typ]) + be32(sid) + bytes([len(name)]) + name + be32(inst) + be32(ver)

def footer(sid):
    return b'\x7e' + be32(sid)

def live(sid, typ, payload):
    return bytes([typ]) + be32(sid) + bytes([len(payload)]) + payload + footer(sid)

def spapr(sid, ver):
    p = b''
    if ver < 3: p += be32(42) + be64(0x1000)
    if ver >= 2: p += be64(0x0102030405060708) + be64(-2)
    return start(4, sid, b'spapr', 0, ver) + p + footer(sid)

def verify(sid, shift=24, valid=33598):
    return start(4, sid, b'hptmig/verify', 0, 1) + be32(shift) + be64(valid) + bytes(range(32)) + footer(sid)

def sub(name, ver, payload):
    return b'\x05' + bytes([len(name)]) + name + be32(ver) + payload

def dev(sid, ver, subs=True, deeper=True, magic=0x600df00d):
    p = b'\x07'
    if ver >= 2: p += be64(-5)
    p += b'\x01'
    if ver < 3: p += b'abcd'
    p += be32(1) + be32(2)
    p += be16(3) + be32(-4) + be16(5) + be32(6)
    p += b'\x00\x00' + be32(magic)
    if subs:
        p += sub(b'fz/dev/sub', 1, be64(0x1122334455667788) +
                 (sub(b'fz/dev/sub/deeper', 2, be16(0x99)) if deeper else b''))
    return start(4, sid, b'fz/dev', 0, ver) + p + footer(sid)

def eof(vmdesc=True):
    if not vmdesc: return b'\x00'
    js = json.dumps({"page_size": 4096, "devices": [{"name": "spapr", "instance_id": 0,
          "vmsd_name": "spapr", "version": 3, "fields": []}]}, separators=(',', ':')).encode()
    return b'\x00\x06' + be32(len(js)) + js

def full_stream(spv=3, devv=3, cmd=True, **kw):
    s = header()
    s += start(1, 7, b'fz/live', 0, 2) + b'\x03abc' + footer(7)
    s += live(7, 2, b'part')
    if cmd: s += b'\x08' + be16(11) + be16(0)
    s += live(7, 3, b'')
    s += spapr(9, spv) + verify(10) + dev(11, devv, **kw)
    return s + eof()

seeds = {
    'full-v3': full_stream(),
    'full-spapr-v1-dev-v1': full_stream(1, 1, cmd=False),
    'full-spapr-v2-dev-v2': full_stream(2, 2, subs=True, deeper=False),
    'dev-no-subsections': header(None) + dev(0, 3, subs=False) + eof(False),
    'eof-only': header() + eof(False),
    'eof-vmdesc': header() + eof(),
    'header-only': header(),
    'version-2': b'QEVM' + be32(2),
    'bad-magic': b'QEVX' + be32(3) + b'\x00',
    'unknown-section': header() + start(4, 1, b'nope', 0, 1) + footer(1) + eof(),
    'unknown-subsection': header() + dev(0, 3)[:-len(footer(0))].replace(b'fz/dev/sub/deeper', b'fz/dev/sub/deepex') + footer(0) + eof(),
    'footer-mismatch': header() + spapr(1, 3)[:-4] + be32(2) + eof(),
    'equal-mismatch': header() + dev(0, 3, magic=1) + eof(),
    'verify-bad-shift': header() + verify(3, 99) + eof(),
    'part-before-start': header() + live(3, 2, b'x') + eof(),
    'commands': header() + b'\x08' + be16(11) + be16(0) + b'\x08' + be16(2) + be16(4) + b'abcd' + eof(),
    'subsection-top': header() + b'\x05\x03abc' + eof(),
}
if len(sys.argv) > 1:
    d = open(sys.argv[1], 'rb').read()
    seeds['qemu-head'] = d[:512]
    p = len(d) - 5
    while not (d[p] == 6 and d[p - 1] == 0 and p + 5 + struct.unpack('>I', d[p + 1:p + 5])[0] == len(d)):
        p -= 1
    seeds['qemu-vmdesc'] = header() + d[p - 1:]
    # QEMU's own spapr FULL record (with its subsections, dtb included):
    # it ends where the next record, globalstate, starts.
    i = d.index(b'\x05spapr\x00\x00\x00\x00\x00\x00\x00\x03') - 5
    j = d.index(b'\x0bglobalstate', i) - 5
    seeds['qemu-spapr'] = header() + d[i:j] + eof(False)
for name, data in seeds.items():
    with open(os.path.join(D, name), 'wb') as f:
        f.write(data)
print(len(seeds), 'seeds in', D)
