#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""proxy_live.py: real-QEMU tests of `hptmig proxy` and `analyze --follow -`
with the kit in ../shared/interop (QEMU 10 ppc64 TCG, a Linux guest).
Each mode exits 0 pass, 1 fail, 77 skipped (no kit, no QEMU, no python
module): CI has no kit and skips. Only processes it started are stopped.

modes:
  live      boot a guest (--cpu POWER8, or POWER9 with disable_radix: hash
            MMU), start churn, migrate it live from QEMU through a tee relay
            (the copy of the source's stream) and `hptmig proxy --json` into
            a destination QEMU (-incoming tcp). The destination guest must
            answer RESUMED-OK-42 on its console; the proxy's htab digest must
            equal the one `hptmig analyze --json` computes on the tee copy.
  hostile   splice a PART record with the 32-bit index wrap (index
            0xffffffff, one valid entry) into the real QEMU 10 POWER8 2G
            fixture, replay it with `hptmig proxy file:...` into a waiting
            destination QEMU: the proxy must refuse it naming the sum, and
            the destination must never be `running`.
  follow    migrate a churning guest with QMP `migrate exec:"hptmig analyze
            --follow -"`; at least two progress lines must be written while
            QEMU still reports the migration `active`.
  tls       certificates made with certtool; a source QEMU with
            tls-creds-x509 (endpoint=client) first migrates in plain text to
            `hptmig proxy --tls-creds` (refused: one warning line, the
            source fails and keeps running, the proxy keeps waiting), then,
            churning, with tls-creds set, through the proxy to a destination
            QEMU with
            tls-creds (endpoint=server, -incoming defer, -S). The paused
            destination saves its state to a file: its table's digest must
            equal the proxy's; then it runs and answers RESUMED-OK-42.

env: INTEROP_DIR (default <repo>/../shared/interop), QEMU_CACHE (default
<repo>/../qemu-cache, must hold interop.env from the kit's setup; this
script never downloads), WORK (scratch dir; kept on failure), KEEP=1.
"""
import argparse, json, os, re, shutil, signal, socket, struct, subprocess
import sys, tempfile, threading, time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAME = 'proxy_live'
started = []            # guest names this run started
procs = []              # Popen objects this run started


def log(msg):
    print('%s: %s' % (NAME, msg), file=sys.stderr, flush=True)


def skip(msg):
    log('SKIP: ' + msg)
    sys.exit(77)


class Fail(Exception):
    pass


def kit_env():
    kit = os.environ.get('INTEROP_DIR') or os.path.join(REPO, '..', 'shared', 'interop')
    cache = os.environ.get('QEMU_CACHE') or os.path.join(REPO, '..', 'qemu-cache')
    if not os.path.isfile(os.path.join(kit, 'run-guest.sh')):
        skip('interop kit not found at %s (set INTEROP_DIR)' % kit)
    envf = os.path.join(cache, 'interop.env')
    if not os.path.isfile(envf):
        skip('no %s (run the kit\'s setup-qemu-pseries.sh, or set QEMU_CACHE)' % envf)
    env = dict(os.environ)
    with open(envf) as f:
        for line in f:
            m = re.match(r"\s*export\s+(\w+)='([^']*)'\s*$", line)
            if m:
                env[m.group(1)] = m.group(2)
    q = env.get('QEMU_SYSTEM_PPC64', '')
    if not (q and os.access(q, os.X_OK)):
        skip('qemu-system-ppc64 not found (QEMU_SYSTEM_PPC64=%r)' % q)
    sys.path.insert(0, kit)
    try:
        import qmp, con  # noqa: F401  (the kit's stdlib-only modules)
    except ImportError as e:
        skip('kit modules: %s' % e)
    return os.path.abspath(kit), env


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(port):
    """true once a socket listens on 127.0.0.1/0.0.0.0:port (no probe connection:
    the proxy would count one as a stray)"""
    hexp = ':%04X' % port
    try:
        with open('/proc/net/tcp') as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[1].endswith(hexp) and cols[3] == '0A':
                    return True
    except OSError:
        pass
    return False


def wait_listen(port, proc, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if listening(port):
            return
        if proc is not None and proc.poll() is not None:
            raise Fail('%s exited (%d) before listening on %d' % (what, proc.returncode, port))
        time.sleep(0.1)
    raise Fail('%s does not listen on port %d after %ds' % (what, port, timeout))


class Guests:
    def __init__(self, kit, env, work):
        self.kit, self.env, self.run = kit, env, os.path.join(work, 'run')
        self.env['INTEROP_RUNDIR'] = self.run

    def sock(self, name, which):
        return os.path.join(self.run, name, which + '.sock')

    def boot(self, name, mem, cpu, append, *qemu_args):
        env = dict(self.env, CPU=cpu, SMP='1', APPEND=append)
        started.append(name)
        r = subprocess.run([os.path.join(self.kit, 'boot-guest.sh'), name, mem] + list(qemu_args),
                           env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        if r.returncode != 0:
            raise Fail('guest %s did not boot:\n%s' % (name, r.stdout.decode(errors='replace')[-2000:]))

    def start(self, name, mem, cpu, append, *qemu_args):
        env = dict(self.env, CPU=cpu, SMP='1', APPEND=append)
        started.append(name)
        r = subprocess.run([os.path.join(self.kit, 'run-guest.sh'), name, mem] + list(qemu_args),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise Fail('QEMU %s did not start: %s' % (name, r.stdout.decode(errors='replace')))

    def pid(self, name):
        try:
            with open(os.path.join(self.run, name, 'pid')) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def alive(self, name):
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            with open('/proc/%d/stat' % pid) as f:
                return f.read().rsplit(') ', 1)[1][0] != 'Z'
        except (OSError, IndexError):
            return False

    def qmp(self, name, cmd, args=None):
        import qmp
        with qmp.QMP(self.sock(name, 'qmp'), timeout=20) as q:
            return q.cmd(cmd, args)

    def console(self, name, line, seconds, expect):
        import con
        return con.run(self.sock(name, 'con'), line, seconds, expect)

    def stop_all(self):
        for g in reversed(started):
            subprocess.run([os.path.join(self.kit, 'stop-guest.sh'), g], env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        del started[:]

    def tail(self, name, which, n=15):
        try:
            with open(os.path.join(self.run, name, which), 'rb') as f:
                return b'\n'.join(f.read().splitlines()[-n:]).decode(errors='replace')
        except OSError:
            return ''


class Tee(threading.Thread):
    """One connection: source -> (copy to a file) -> target, and target's
    bytes (a return path) back to the source."""

    def __init__(self, port, target_port, path):
        super().__init__(daemon=True)
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(('127.0.0.1', port))
        self.ls.listen(1)
        self.ls.settimeout(300)
        self.target_port, self.path = target_port, path
        self.bytes, self.error = 0, None

    def back(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def run(self):
        try:
            src, _ = self.ls.accept()
            self.ls.close()
            dst = socket.create_connection(('127.0.0.1', self.target_port), timeout=30)
            dst.settimeout(None)
            src.settimeout(None)
            rp = threading.Thread(target=self.back, args=(dst, src), daemon=True)
            rp.start()
            with open(self.path, 'wb') as f:
                while True:
                    d = src.recv(262144)
                    if not d:
                        break
                    f.write(d)
                    self.bytes += len(d)
                    dst.sendall(d)
            dst.shutdown(socket.SHUT_WR)
            rp.join(60)
            src.close()
            dst.close()
        except OSError as e:
            self.error = str(e)


def migrate(g, name, uri, live_s, bw, timeout=300, on_poll=None):
    """QMP migrate with a 1 ms downtime limit (QEMU keeps iterating) for live_s
    seconds, then 2000 ms; returns the last query-migrate."""
    g.qmp(name, 'migrate-set-parameters', {'downtime-limit': 1, 'max-bandwidth': bw})
    t0 = time.time()
    g.qmp(name, 'migrate', {'uri': uri})
    relaxed = False
    while True:
        time.sleep(0.5)
        info = g.qmp(name, 'query-migrate')
        st = info.get('status')
        if on_poll:
            on_poll(st)
        if st in ('completed', 'failed', 'cancelled'):
            info['wall_s'] = round(time.time() - t0, 1)
            return info
        if not relaxed and time.time() - t0 >= live_s:
            g.qmp(name, 'migrate-set-parameters', {'downtime-limit': 2000})
            relaxed = True
        if time.time() - t0 > timeout:
            g.qmp(name, 'migrate_cancel')
            raise Fail('migration not done after %ds (cancelled)' % timeout)


def churn(g, name):
    out, ok = g.console(name, 'churn', 10, 'CHURN-STARTED')
    if not ok:
        raise Fail('churn did not start on %s: %r' % (name, out[-300:]))


def analyze_json(binp, path):
    r = subprocess.run([binp, 'analyze', '--json', path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    if r.returncode != 0:
        raise Fail('analyze %s failed (%d): %s' % (path, r.returncode, r.stderr.decode(errors='replace')))
    return json.loads(r.stdout)


def jget(obj, dotted):
    for k in dotted.split('.'):
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def mode_live(a, kit, env, work):
    g = Guests(kit, env, work)
    p9 = a.cpu.upper() == 'POWER9'
    append = 'console=hvc0 quiet disable_radix' if p9 else 'console=hvc0 quiet'
    log('booting the source (%s%s, %s, -smp 1)' % (a.cpu, ' hash MMU' if p9 else '', a.mem))
    t0 = time.time()
    g.boot('src', a.mem, a.cpu, append)
    log('source READY in %.1fs; starting churn' % (time.time() - t0))
    churn(g, 'src')
    pd, pp, pt = free_port(), free_port(), free_port()
    g.start('dst', a.mem, a.cpu, append, '-incoming', 'tcp:127.0.0.1:%d' % pd)
    wait_listen(pd, None, 'destination QEMU')
    pj, pe = os.path.join(work, 'proxy.json'), os.path.join(work, 'proxy.err')
    cmd = [a.bin, 'proxy', 'tcp:127.0.0.1:%d' % pp, 'tcp:127.0.0.1:%d' % pd, '--json']
    if a.passthrough:
        cmd.append('--passthrough')
    tv = os.path.join(work, 'proxy.time')
    if a.rss:
        if not os.access('/usr/bin/time', os.X_OK):
            skip('--rss needs /usr/bin/time')
        cmd = ['/usr/bin/time', '-v', '-o', tv] + cmd
    with open(pj, 'wb') as jo, open(pe, 'wb') as eo:
        proxy = subprocess.Popen(cmd, stdout=jo, stderr=eo)
    procs.append(proxy)
    wait_listen(pp, proxy, 'hptmig proxy')
    copy = os.path.join(work, 'source-copy.mig')
    tee = Tee(pt, pp, copy)
    tee.start()
    log('migrating live through tee :%d -> proxy :%d -> QEMU :%d (%s)' %
        (pt, pp, pd, ' '.join(cmd[2:])))
    info = migrate(g, 'src', 'tcp:127.0.0.1:%d' % pt, a.live_seconds, a.bandwidth, timeout=a.timeout)
    log('source: %s in %ss, downtime %s ms, %s dirty syncs' % (
        info.get('status'), info.get('wall_s'), info.get('downtime'),
        jget(info, 'ram.dirty-sync-count')))
    if info.get('status') != 'completed':
        raise Fail('source migration %s: %s; proxy said: %s' % (
            info.get('status'), info.get('error-desc'), open(pe).read()[-1000:]))
    try:
        rc = proxy.wait(120)
    except subprocess.TimeoutExpired:
        raise Fail('proxy still running 120 s after the source completed')
    tee.join(60)
    rep_text = open(pj).read()
    if rc != 0:
        raise Fail('proxy exit %d: %s %s' % (rc, rep_text, open(pe).read()[-1000:]))
    rep = json.loads(rep_text)
    ana = analyze_json(a.bin, copy)
    rss = None
    if a.rss:
        m = re.search(r'Maximum resident set size \(kbytes\): (\d+)', open(tv).read())
        rss = int(m.group(1)) if m else None
    pdig, adig = jget(rep, 'htab.digest'), jget(ana, 'htab.digest')
    summary = {'cpu': a.cpu, 'mem': a.mem, 'passthrough': a.passthrough,
               'proxy_status': rep.get('status'), 'checked': rep.get('checked'),
               'bytes': rep.get('bytes'), 'bytes_out': rep.get('bytes_out'),
               'tee_bytes': tee.bytes, 'proxy_max_rss_kb': rss, 'duration_ms': rep.get('duration_ms'),
               'held_ms': rep.get('held_ms'), 'hold_check_ms': rep.get('hold_check_ms'),
               'htab_shift': jget(rep, 'htab.shift'), 'htab_valid': jget(rep, 'htab.valid'),
               'htab_records': jget(rep, 'htab.records'), 'htab_passes': jget(rep, 'htab.passes'),
               'digest': pdig, 'analyze_digest': adig,
               'source_downtime_ms': info.get('downtime'), 'source_wall_s': info.get('wall_s')}
    if rep.get('status') != 'ok' or rep.get('checked') is not True:
        raise Fail('proxy report not ok/checked: %s' % rep_text)
    if tee.error or rep.get('bytes') != tee.bytes:
        raise Fail('tee copy %d bytes (%s), proxy read %s' % (tee.bytes, tee.error, rep.get('bytes')))
    if not pdig or pdig != adig:
        raise Fail('digest mismatch: proxy %s, analyze of the tee copy %s' % (pdig, adig))
    if jget(rep, 'htab.no_hpt') or not jget(rep, 'htab.valid'):
        raise Fail('no hash table in the stream (radix guest?): %s' % rep_text)
    # the destination: running, and the guest answers on its console
    import qmp
    st = qmp.wait_status(g.sock('dst', 'qmp'), ['running', 'guest-panicked', 'internal-error', 'shutdown'], 60)
    summary['dst_status'] = st
    if st != 'running':
        raise Fail('destination not running (%s): %s' % (st, g.tail('dst', 'qemu.log')))
    # POWER8 (XICS) answers at the next heartbeat: up to 10 s (kit README)
    ok = False
    for _ in range(3):
        out, ok = g.console('dst', 'echo RESUMED-OK-$((6*7))', 30, 'RESUMED-OK-42')
        if ok:
            break
    summary['console'] = 'RESUMED-OK-42' if ok else 'no answer'
    print(json.dumps(summary), flush=True)
    if not ok:
        raise Fail('destination guest did not answer: %s' % g.tail('dst', 'serial.log'))
    log('PASS: %s guest resumed through the proxy, digest %s = analyze of the tee copy'
        % (a.cpu, pdig[:16]))


def fixture(work):
    fx = os.environ.get('HPTMIG_QEMU_FIXTURES') or '/work/shared/fixtures/qemu'
    z = os.path.join(fx, 'pseries-qemu10-p8-2g-live.mig.zst')
    if not os.path.isfile(z):
        z = os.path.join(REPO, '..', 'shared', 'fixtures', 'qemu', 'pseries-qemu10-p8-2g-live.mig.zst')
    if not os.path.isfile(z):
        skip('fixture pseries-qemu10-p8-2g-live.mig.zst not found (HPTMIG_QEMU_FIXTURES)')
    if not shutil.which('zstd'):
        skip('zstd missing')
    out = os.path.join(work, 'p8-2g-live.mig')
    subprocess.run(['zstd', '-q', '-d', '-f', z, '-o', out], check=True)
    with open(out, 'rb') as f:
        return f.read()


def splice_wrap(data):
    """insert a spapr/htab PART record (index 0xffffffff, one valid entry)
    before a real PART record of the section in the middle of the stream
    (after RAM has gone out); returns (stream, offset)"""
    i = data.find(b'\x0aspapr/htab')
    if i < 5 or data[i - 5] != 0x01:
        raise Fail('no spapr/htab START record in the fixture')
    sid = data[i - 4:i]
    # a record boundary: PART header of this section right after a footer
    parts = [m.start() for m in re.finditer(re.escape(b'\x02' + sid), data)
             if m.start() > 5 and data[m.start() - 5] == 0x7e]
    if len(parts) < 2:
        raise Fail('fewer than 2 spapr/htab PART records in the fixture')
    at = parts[len(parts) // 2]
    bad = (b'\x02' + sid + struct.pack('>IIHH', 0, 0xffffffff, 1, 0) +
           struct.pack('>QQ', 0x4000000000000001, 0x1000) + b'\0' * 8 + b'\x7e' + sid)
    return data[:at] + bad + data[at:], at


def break_final_footer(data):
    """flip the footer byte of the FULL `globalstate` record (the last
    device section, in the final phase the proxy holds); returns (stream,
    offset of the byte)"""
    i = data.rfind(b'\x0bglobalstate')
    if i < 5 or data[i - 5] != 0x04:
        raise Fail('no FULL globalstate record in the fixture')
    sid = data[i - 4:i]
    j = data.find(b'\x7e' + sid, i + 12)
    if j < 0 or j > i + 12 + 4096:
        raise Fail('globalstate footer not found')
    return data[:j] + b'\x7f' + data[j + 1:], j


def dst_state(g):
    time.sleep(3)
    if not g.alive('dst'):
        return 'exited'
    try:
        st = g.qmp('dst', 'query-status')['status']
        mig = g.qmp('dst', 'query-migrate').get('status')
    except Exception as e:  # QEMU may be exiting after its failed load
        return 'exited (%s)' % e
    return '%s (migration %s)' % (st, mig)


def replay(g, a, path, name):
    """a destination QEMU (POWER8 2G, as the fixture; no -S, so a loaded
    state would run) fed by `hptmig proxy file:PATH`; returns (rc, report, stderr)"""
    pd = free_port()
    g.start(name, '2G', 'POWER8', 'console=hvc0 quiet', '-incoming', 'tcp:127.0.0.1:%d' % pd)
    wait_listen(pd, None, 'destination QEMU')
    r = subprocess.run([a.bin, 'proxy', 'file:' + path, 'tcp:127.0.0.1:%d' % pd, '--json', '--quiet'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    err = r.stderr.decode(errors='replace')
    try:
        rep = json.loads(r.stdout)
    except ValueError:
        raise Fail('proxy printed no JSON report (exit %d): %s' % (r.returncode, err))
    return r.returncode, rep, err


def mode_hostile(a, kit, env, work):
    g = Guests(kit, env, work)
    good = fixture(work)
    data, at = splice_wrap(good)
    bad = os.path.join(work, 'wrap.mig')
    with open(bad, 'wb') as f:
        f.write(data)
    del good, data
    # control: the unpatched stream through the proxy makes a running guest,
    # so "not running" below is the cut's doing
    log('control: the unpatched fixture through the proxy')
    rc, rep, err = replay(g, a, os.path.join(work, 'p8-2g-live.mig'), 'ctl')
    g.env['INTEROP_RUNDIR'] = g.run
    import qmp
    st = qmp.wait_status(g.sock('ctl', 'qmp'), ['running'], 60)
    if rc != 0 or rep.get('status') != 'ok' or st != 'running':
        raise Fail('control: proxy exit %d (%s), destination %s: %s' % (rc, rep.get('status'), st, err[-500:]))
    g.stop_all()
    log('control ok (destination running); replaying with an index-wrap PART at offset %d' % at)
    rc, rep, err = replay(g, a, bad, 'dst')
    lines = [l for l in err.splitlines() if l.strip()]
    log('proxy exit %d: %s' % (rc, lines[-1] if lines else ''))
    if rc != 1 or rep.get('status') != 'refused':
        raise Fail('proxy did not refuse the stream (exit %d, status %s)' % (rc, rep.get('status')))
    if '4294967296' not in err or 'spapr/htab' not in err:
        raise Fail('refusal line does not name the wrap: %s' % err)
    eo = jget(rep, 'error.offset')
    if eo is None or not (at <= eo < at + 41):
        raise Fail('refusal offset %s not in the spliced record at %d' % (eo, at))
    if rep.get('bytes_out', 0) > at:
        raise Fail('proxy forwarded %d bytes, past the bad record at %d' % (rep['bytes_out'], at))
    # the destination: waiting (inmigrate) or failed / exited, never running
    st = dst_state(g)
    print(json.dumps({'spliced_at': at, 'proxy_exit': rc, 'status': rep.get('status'),
                      'error_offset': eo, 'bytes_out': rep.get('bytes_out'),
                      'destination': st}), flush=True)
    if st.startswith('running') or 'postmigrate' in st or 'completed' in st:
        raise Fail('destination QEMU is %s after the cut' % st)
    log('the index wrap was stopped in the proxy after %d bytes; destination QEMU: %s' % (at, st))
    g.stop_all()
    # a bad record in the held final phase: the RAM and the table went out,
    # the device state and EOF must not
    data, at = break_final_footer(fixture(work))
    with open(bad, 'wb') as f:
        f.write(data)
    del data
    rc, rep, err = replay(g, a, bad, 'dst2')
    lines = [l for l in err.splitlines() if l.strip()]
    log('final phase: proxy exit %d: %s' % (rc, lines[-1] if lines else ''))
    eo = jget(rep, 'error.offset')
    st = dst_state(g)
    print(json.dumps({'footer_at': at, 'proxy_exit': rc, 'status': rep.get('status'), 'error_offset': eo,
                      'bytes_out': rep.get('bytes_out'), 'hold': rep.get('hold'),
                      'held_bytes': rep.get('held_bytes'), 'destination': st}), flush=True)
    if rc != 1 or rep.get('status') != 'refused' or 'footer' not in err:
        raise Fail('proxy did not refuse the bad footer in the final phase (exit %d, %s): %s'
                   % (rc, rep.get('status'), err[-500:]))
    if eo is None or eo != at:
        raise Fail('refusal offset %s, the bad footer is at %d' % (eo, at))
    if rep.get('bytes_out', 0) >= at or rep.get('hold') is not True:
        raise Fail('proxy forwarded %s bytes (bad footer at %d), hold %s'
                   % (rep.get('bytes_out'), at, rep.get('hold')))
    if st.startswith('running') or 'postmigrate' in st or 'completed' in st:
        raise Fail('destination QEMU is %s after the cut in the final phase' % st)
    log('PASS: the index wrap and a bad footer in the held final phase were both stopped '
        'in the proxy; destination QEMU: %s' % st)


def mode_follow(a, kit, env, work):
    g = Guests(kit, env, work)
    log('booting the source (POWER8, %s, -smp 1)' % a.mem)
    g.boot('src', a.mem, 'POWER8', 'console=hvc0 quiet')
    churn(g, 'src')
    out, prog = os.path.join(work, 'analyze.out'), os.path.join(work, 'analyze.progress')
    if "'" in a.bin + work:
        skip('no single quotes in paths, please')
    uri = "exec:'%s' analyze --follow - > '%s' 2> '%s'" % (a.bin, out, prog)
    seen = []       # progress line counts seen while QEMU said "active"

    def poll(st):
        if st == 'active':
            try:
                with open(prog) as f:
                    seen.append(sum(1 for l in f if l.strip()))
            except OSError:
                seen.append(0)
    info = migrate(g, 'src', uri, a.live_seconds, a.bandwidth, on_poll=poll)
    if info.get('status') != 'completed':
        raise Fail('migration %s: %s' % (info.get('status'), info.get('error-desc')))
    time.sleep(2)       # exec: may still be finishing
    text = open(out).read() if os.path.exists(out) else ''
    plines = [l for l in open(prog).read().splitlines() if l.strip()] if os.path.exists(prog) else []
    during = max(seen) if seen else 0
    print(json.dumps({'polls_active': len(seen), 'progress_lines_while_active': during,
                      'progress_lines_total': len(plines), 'first': plines[:1], 'last': plines[-1:],
                      'source_wall_s': info.get('wall_s')}), flush=True)
    if during < 2:
        raise Fail('only %d progress lines while the migration was active (%d in all)' % (during, len(plines)))
    if not re.search(r'^htab: shift \d+', text, re.M) or 'final table:' not in text:
        raise Fail('analyze printed no complete report at the end: %r' % text[:500])
    log('PASS: %d progress lines before the end of the migration (%d in all)' % (during, len(plines)))


TLS_DN = 'CN=hptmig interop source,O=hptmig test'


def make_pki(d):
    """QEMU's tls-creds-x509 directory, made with certtool: a CA, a server
    certificate for localhost and 127.0.0.1, a client certificate (TLS_DN)"""
    if not shutil.which('certtool'):
        skip('certtool missing (gnutls-bin)')
    os.makedirs(d, mode=0o700)
    infos = {'ca': 'cn = hptmig interop CA\nca\ncert_signing_key\nexpiration_days = 2\n',
             'server': 'organization = hptmig test\ncn = localhost\ndns_name = localhost\n'
                       'ip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\n'
                       'expiration_days = 2\n',
             'client': 'organization = hptmig test\ncn = hptmig interop source\ntls_www_client\n'
                       'encryption_key\nsigning_key\nexpiration_days = 2\n'}

    def ct(*args):
        r = subprocess.run(['certtool'] + list(args), cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise Fail('certtool %s: %s' % (' '.join(args), r.stdout.decode(errors='replace')[-500:]))
    for k, v in infos.items():
        with open(os.path.join(d, k + '.info'), 'w') as f:
            f.write(v)
        ct('--generate-privkey', '--outfile', k + '-key.pem')
    ct('--generate-self-signed', '--load-privkey', 'ca-key.pem', '--template', 'ca.info',
       '--outfile', 'ca-cert.pem')
    for k in ('server', 'client'):
        ct('--generate-certificate', '--load-ca-certificate', 'ca-cert.pem', '--load-ca-privkey',
           'ca-key.pem', '--load-privkey', k + '-key.pem', '--template', k + '.info',
           '--outfile', k + '-cert.pem')


def wait_migration(g, name, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        info = g.qmp(name, 'query-migrate')
        if info.get('status') in ('completed', 'failed', 'cancelled'):
            return info
        time.sleep(0.5)
    raise Fail('%s: migration not done after %ds' % (name, timeout))


def mode_tls(a, kit, env, work):
    g = Guests(kit, env, work)
    pki = os.path.join(work, 'pki')
    make_pki(pki)
    if ',' in pki:
        skip('no commas in the scratch path, please (QEMU option syntax)')
    append = 'console=hvc0 quiet'
    log('booting the source (%s, %s) with tls-creds-x509 endpoint=client' % (a.cpu, a.mem))
    g.boot('src', a.mem, a.cpu, append,
           '-object', 'tls-creds-x509,id=tls0,dir=%s,endpoint=client' % pki)
    pd, pp = free_port(), free_port()
    g.start('dst', a.mem, a.cpu, append, '-S', '-incoming', 'defer',
            '-object', 'tls-creds-x509,id=tls0,dir=%s,endpoint=server' % pki)
    g.qmp('dst', 'migrate-set-parameters', {'tls-creds': 'tls0'})
    g.qmp('dst', 'migrate-incoming', {'uri': 'tcp:127.0.0.1:%d' % pd})
    wait_listen(pd, None, 'destination QEMU')
    pj, pe = os.path.join(work, 'proxy.out'), os.path.join(work, 'proxy.err')
    cmd = [a.bin, 'proxy', 'tcp:127.0.0.1:%d' % pp, 'tcp:127.0.0.1:%d' % pd, '--tls-creds', pki,
           '--tls-authz', TLS_DN, '--json', '--quiet', '--status-interval', '1000']
    with open(pj, 'wb') as jo, open(pe, 'wb') as eo:
        proxy = subprocess.Popen(cmd, stdout=jo, stderr=eo)
    procs.append(proxy)
    wait_listen(pp, proxy, 'hptmig proxy')
    # a plain-text source on the TLS port: refused with one line, the proxy waits on
    g.qmp('src', 'migrate', {'uri': 'tcp:127.0.0.1:%d' % pp})
    info = wait_migration(g, 'src', 60)
    time.sleep(0.5)
    warn = [l for l in open(pe).read().splitlines() if 'stray connection' in l]
    log('plain source: %s; proxy: %s' % (info.get('status'), warn[:1]))
    if info.get('status') != 'failed':
        raise Fail('a plain source through the TLS proxy: migration %s' % info.get('status'))
    if len(warn) != 1 or 'plain migration stream (QEVM), not TLS' not in warn[0]:
        raise Fail('the proxy did not refuse the plain source in one line: %s' % open(pe).read())
    if proxy.poll() is not None:
        raise Fail('the proxy ended after the plain source (exit %d)' % proxy.returncode)
    if g.qmp('src', 'query-status')['status'] != 'running':
        raise Fail('the source guest does not run after the refused migration')
    churn(g, 'src')
    log('migrating live with TLS: QEMU -> hptmig proxy --tls-creds :%d -> QEMU :%d' % (pp, pd))
    g.qmp('src', 'migrate-set-parameters', {'tls-creds': 'tls0'})
    info = migrate(g, 'src', 'tcp:127.0.0.1:%d' % pp, a.live_seconds, a.bandwidth, timeout=a.timeout)
    if info.get('status') != 'completed':
        raise Fail('TLS migration %s: %s; proxy: %s' % (info.get('status'), info.get('error-desc'),
                                                        open(pe).read()[-1000:]))
    try:
        rc = proxy.wait(120)
    except subprocess.TimeoutExpired:
        raise Fail('proxy still running 120 s after the source completed')
    lines = open(pj).read().splitlines()
    if rc != 0 or not lines:
        raise Fail('proxy exit %d: %s %s' % (rc, lines[-1:], open(pe).read()[-1000:]))
    rep = json.loads(lines[-1])
    status = [json.loads(l) for l in lines[:-1]]
    if rep.get('status') != 'ok' or rep.get('checked') is not True:
        raise Fail('proxy report not ok/checked: %s' % lines[-1])
    if not status or status[-1].get('status') != 'completed' or status[-1].get('side') != 'proxy' \
            or status[-1].get('transferred') != rep.get('bytes'):
        raise Fail('status lines do not end completed with the report\'s bytes: %s' % status[-1:])
    # the paused destination holds the table it loaded: save it, compare
    import qmp
    st = qmp.wait_status(g.sock('dst', 'qmp'), ['paused', 'prelaunch', 'postmigrate'], 60)
    saved = os.path.join(work, 'dst-saved.mig')
    g.qmp('dst', 'migrate-set-parameters', {'tls-creds': ''})
    g.qmp('dst', 'migrate', {'uri': 'file:' + saved})
    info2 = wait_migration(g, 'dst', 300)
    if info2.get('status') != 'completed':
        raise Fail('the paused destination (%s) could not save: %s' % (st, info2.get('error-desc')))
    ana = analyze_json(a.bin, saved)
    pdig, adig = jget(rep, 'htab.digest'), jget(ana, 'htab.digest')
    g.qmp('dst', 'cont')
    ok = False
    for _ in range(3):
        out, ok = g.console('dst', 'echo RESUMED-OK-$((6*7))', 30, 'RESUMED-OK-42')
        if ok:
            break
    print(json.dumps({'cpu': a.cpu, 'mem': a.mem, 'plain_source': 'refused', 'proxy_status': rep.get('status'),
                      'bytes': rep.get('bytes'), 'bytes_out': rep.get('bytes_out'),
                      'status_lines': len(status), 'digest': pdig, 'destination_saved_digest': adig,
                      'htab_valid': jget(rep, 'htab.valid'), 'source_wall_s': info.get('wall_s'),
                      'console': 'RESUMED-OK-42' if ok else 'no answer'}), flush=True)
    if not pdig or pdig != adig:
        raise Fail('digest mismatch: proxy %s, the destination\'s saved table %s' % (pdig, adig))
    if not jget(rep, 'htab.valid'):
        raise Fail('no hash table in the stream: %s' % lines[-1])
    if not ok:
        raise Fail('destination guest did not answer: %s' % g.tail('dst', 'serial.log'))
    log('PASS: QEMU -> TLS -> proxy -> TLS -> QEMU; the plain source refused in one line; '
        'digest %s = the destination\'s table' % pdig[:16])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('mode', choices=['live', 'hostile', 'follow', 'tls'])
    ap.add_argument('--bin', default=os.path.join(REPO, 'build', 'tools', 'hptmig'))
    ap.add_argument('--cpu', default='POWER8')
    ap.add_argument('--mem', default='1G')
    ap.add_argument('--passthrough', action='store_true')
    ap.add_argument('--rss', action='store_true', help='live: run the proxy under /usr/bin/time -v')
    ap.add_argument('--live-seconds', type=float, default=8)
    ap.add_argument('--bandwidth', type=int, default=32 << 20)
    ap.add_argument('--timeout', type=float, default=300, help='live: give up the migration after S')
    a = ap.parse_args()
    global NAME
    NAME = 'proxy_live %s' % a.mode
    if not os.access(a.bin, os.X_OK):
        log('FAIL: hptmig not found at %s' % a.bin)
        return 1
    a.bin = os.path.abspath(a.bin)
    kit, env = kit_env()
    work = os.environ.get('WORK') or tempfile.mkdtemp(prefix='hptmig-proxy-live.')
    os.makedirs(work, exist_ok=True)
    g = Guests(kit, env, work)
    ok = False
    try:
        {'live': mode_live, 'hostile': mode_hostile, 'follow': mode_follow,
         'tls': mode_tls}[a.mode](a, kit, env, work)
        ok = True
    except Fail as e:
        log('FAIL: %s (kept in %s)' % (e, work))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        g.stop_all()
    if ok and not os.environ.get('KEEP'):
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
