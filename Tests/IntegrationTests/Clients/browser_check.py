#!/usr/bin/env python3
"""Drives a real headless Chromium against an sse-hub and prints, one JSON object a line, what the pages saw.

Two phases, so the caller can start the hub with `--cors-origin <app origin>` once the origins are known:
  1. bind the "app" and "other" origin servers, print {"step":"origins","app":...,"other":...};
  2. wait for a line `go` on stdin (unless --no-wait), then launch Chromium on the app page.
The app page (cookie mode: GET /login first) opens the stream, subscribes, and waits for the first --event-type
event; it reports `connected`, `subscribed`, `event` (or `error`) by POSTing to its own origin's /result. It then
navigates the same tab to the other origin, whose page opens the same credentialed EventSource and reports
`refused` (error, readyState CLOSED, no `connected`) or `connected`. Then {"step":"done"}.
Exit status: 0 done, 1 done but a page reported an error (or Chromium died), 2 harness problem, 3 timeout.
Python 3.11 standard library only; no CDP: the pages report over plain HTTP.
"""
import argparse, contextlib, http.server, json, os, queue, select, shutil, signal, subprocess, sys, tempfile, threading, time

from chromium_processes import become_subreaper, kill_all, log_tail

PAGE = """<!doctype html><meta charset="utf-8"><title>sse-hub browser check</title><script>
const cfg = %s;
let finished = false;
// Chained, so the lines come out in the order the page saw things; awaited before any navigation, since a
// fetch still in flight when the page unloads is cancelled.
let reported = Promise.resolve();
function report(step, extra) {
  const body = JSON.stringify(Object.assign({step}, extra || {}));
  return reported = reported.then(() => fetch('/result', {method: 'POST', body})).catch(() => {});
}
function parse(text) { try { return JSON.parse(text); } catch (e) { return text; } }
const streamURL = cfg.hub + '/api/sse/stream' + (cfg.mode === 'query' ? '?token=' + encodeURIComponent(cfg.token) : '');
function finish(es) {
  if (finished) return;
  finished = true; if (es) es.close();
  if (cfg.next) location.href = cfg.next;  // the other origin's page, in this same tab
}
window.addEventListener('error', e => report('error', {where: 'page', message: String(e.message)}));
window.addEventListener('unhandledrejection', e => report('error', {where: 'page', message: String(e.reason)}));

async function app() {
  if (cfg.mode === 'cookie') {
    // The HttpOnly cookie comes from this origin's backend, as in a real app; the page never sees the token.
    const r = await fetch('/login', {credentials: 'same-origin'});
    if (!r.ok) { await report('error', {where: 'login', status: r.status}); return finish(null); }
  }
  const es = new EventSource(streamURL, {withCredentials: cfg.mode === 'cookie'});
  let connected = false, subscribing = false, gotEvent = false, subscribeDone;
  const afterSubscribe = new Promise(resolve => subscribeDone = resolve);
  // Any stream error ends this page: EventSource would silently reconnect, and a test wants to know.
  es.onerror = async () => {
    if (finished) return;
    await report('error', {where: 'stream', readyState: es.readyState, connected});
    finish(es);
  };
  es.addEventListener(cfg.eventType, async e => {
    if (!subscribing || gotEvent) return;
    gotEvent = true;
    await afterSubscribe;  // a hub fast enough to deliver before the subscribe answer is read: keep line order
    if (finished) return;
    await report('event', {type: e.type, data: parse(e.data), lastEventId: e.lastEventId});
    finish(es);
  });
  es.addEventListener('connected', async e => {
    if (connected) return;
    connected = true; await report('connected', {data: parse(e.data)});
    subscribing = true;  // from here on, the first cfg.eventType event is the one the test published
    const headers = {'Content-Type': 'application/json'};
    if (cfg.mode === 'query') headers['Authorization'] = 'Bearer ' + cfg.token;
    let res, body;
    try {
      res = await fetch(cfg.hub + '/api/sse/subscribe', {
        method: 'POST', credentials: cfg.mode === 'cookie' ? 'include' : 'same-origin', headers,
        body: JSON.stringify({topics: [cfg.topic]})});
      body = parse(await res.text());
    } catch (err) {  // a CORS refusal surfaces only as an opaque TypeError
      await report('error', {where: 'subscribe', message: String(err)});
      return finish(es);
    }
    await report('subscribed', {status: res.status, body});
    if (!res.ok) finish(es);
    subscribeDone();
  });
}

async function other() {
  // Always credentialed, and in query mode with the token too: only the hub's CORS answer may stop it.
  const es = new EventSource(streamURL, {withCredentials: true});
  let connected = false;
  es.addEventListener('connected', async e => {
    connected = true; if (finished) return;
    finished = true; es.close(); await report('connected', {data: parse(e.data)});
  });
  es.onerror = async () => {
    if (finished) return; finished = true;
    // CLOSED: the browser failed the connection for good (CORS refusal, or a non-200 answer such as 401).
    // CONNECTING would be a network error with a retry pending: not a refusal.
    if (es.readyState === EventSource.CLOSED && !connected) await report('refused', {readyState: es.readyState});
    else { const state = es.readyState; es.close(); await report('error', {where: 'stream', readyState: state}); }
  };
}
(cfg.role === 'app' ? app : other)();
</script>
"""


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--hub', required=True, help='http://127.0.0.1:PORT')
    p.add_argument('--mode', choices=['cookie', 'query'], default='cookie')
    p.add_argument('--token', required=True)
    p.add_argument('--cookie-name', default='sse_token')
    p.add_argument('--topic', required=True)
    p.add_argument('--event-type', required=True)
    p.add_argument('--app-port', type=int, default=0)
    p.add_argument('--other-port', type=int, default=0)
    p.add_argument('--timeout', type=float, default=30, help='seconds for each phase (waiting for go; the pages)')
    p.add_argument('--no-wait', action='store_true', help='launch Chromium at once, without waiting for go')
    p.add_argument('--chromium', default='/usr/bin/chromium')
    return p.parse_args()


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(',', ':')) + '\n')
    sys.stdout.flush()


def origin_server(role, port, args, reports, pages):
    class Handler(http.server.BaseHTTPRequestHandler):
        log_message = lambda self, *a: None  # stderr stays quiet; the caller reads stdout only

        def answer(self, status, body=b'', ctype='text/plain', extra=()):
            self.send_response(status)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            for name, value in extra: self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split('?')[0]
            if path == '/':
                self.answer(200, pages[role].encode(), 'text/html; charset=utf-8')
            elif path == '/login' and role == 'app':
                # Host-only cookie on 127.0.0.1: cookies ignore ports, so it also goes to the hub (same site).
                cookie = f'{args.cookie_name}={args.token}; HttpOnly; Path=/; SameSite=Lax'
                self.answer(200, b'ok', extra=[('Set-Cookie', cookie)])
            else:
                self.answer(404)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
            if self.path != '/result':
                return self.answer(404)
            try:
                report = json.loads(body)
            except ValueError:
                report = {'step': 'error', 'where': 'harness', 'raw': body.decode(errors='replace')}
            reports.put({'origin': role, **report})
            self.answer(204)

    server = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f'http://127.0.0.1:{server.server_address[1]}'


def wait_for_go(timeout):
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sys.stdin], [], [], left)[0]:
            line = sys.stdin.readline()
            if line.strip() == 'go' or not line:
                return None if line else 'stdin closed before go'  # EOF: the caller has gone
    return 'no go within the timeout'


def stop_chromium():
    return kill_all()


def main():
    args = parse_args()
    args.hub = args.hub.rstrip('/')
    # Chromium's helpers outlive the browser process for a moment; as a subreaper we inherit and reap them,
    # so no zombie lingers after we exit.
    become_subreaper()
    # SIGTERM from the test (its own timeout) must still run the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reports, pages = queue.Queue(), {}
    try:
        _, app = origin_server('app', args.app_port, args, reports, pages)
        _, other = origin_server('other', args.other_port, args, reports, pages)
    except OSError as e:
        emit({'step': 'error', 'origin': 'harness', 'detail': f'bind: {e}'})
        return 2
    common = {'hub': args.hub, 'mode': args.mode, 'token': args.token, 'topic': args.topic,
              'eventType': args.event_type}
    for role, nxt in (('app', other + '/'), ('other', None)):
        cfg = json.dumps({**common, 'role': role, 'next': nxt}).replace('</', '<\\/')
        pages[role] = PAGE % cfg
    emit({'step': 'origins', 'app': app, 'other': other})
    if not args.no_wait and (problem := wait_for_go(args.timeout)):
        emit({'step': 'error', 'origin': 'harness', 'detail': problem})
        return 2

    tmp = tempfile.mkdtemp(prefix='sse-browser-check-')
    log_path = os.path.join(tmp, 'chromium.log')
    flags = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
             '--no-default-browser-check', '--disable-extensions', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', '--mute-audio', f'--user-data-dir={tmp}/profile']
    # setpriv --pdeathsig: should we be SIGKILLed (no cleanup possible), the browser dies with us and its
    # helpers follow it (PID 1 reaps them). Its own session keeps the caller's terminal signals off it.
    prefix = ['setpriv', '--pdeathsig', 'KILL', '--'] if shutil.which('setpriv') else []
    started = time.monotonic()
    proc, status, failed = None, 3, False
    try:
        with open(log_path, 'wb') as log:
            # Debian's build always starts crashpad handlers; their database follows XDG_CONFIG_HOME, so this
            # keeps it in the temp dir instead of ~/.config. (--disable-crashpad-for-testing crashes the
            # network service here: "FD ownership violation".)
            env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(tmp, 'config'))
            proc = subprocess.Popen(prefix + [args.chromium, *flags, app + '/'], stdin=subprocess.DEVNULL, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline, last = started + args.timeout, None
        while (left := deadline - time.monotonic()) > 0:
            try:
                report = reports.get(timeout=min(left, 0.2))
            except queue.Empty:
                if proc.poll() is not None:
                    emit({'step': 'error', 'origin': 'harness', 'detail': f'chromium exited {proc.returncode}',
                          'chromium_log': log_tail(log_path)})
                    return 1
                continue
            report['t'] = round(time.monotonic() - started, 3)
            emit(report)
            last = report.get('step')
            failed |= last == 'error'
            if report['origin'] == 'other':
                emit({'step': 'done'})
                status = 1 if failed else 0
                break
        else:
            emit({'step': 'timeout', 'last': last, 'chromium_log': log_tail(log_path)})
    finally:
        if proc is not None and not stop_chromium():
            emit({'step': 'error', 'origin': 'harness', 'detail': 'chromium processes survived SIGKILL'})
            status = status or 1
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == '__main__':
    sys.exit(main())
