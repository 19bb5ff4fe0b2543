#!/usr/bin/env python3
"""Loads the supervisor's live status page in a real headless Chromium, step by step, and prints what it showed.

Usage: status_page_check.py --url http://127.0.0.1:PORT/status --screenshot PATH [--timeout 60] [--wait-ms 4000]
Commands on stdin, one a line; each answers one JSON line on stdout:
  dom          -> {"step":"dom","streams":INT|null,"eventsDelivered":INT|null,"workers":INT,"state":STR|null,
                   "snapshots":INT|null}   (#streams, #events-delivered, <tr>s in #workers, #state, body[data-snapshots])
  shot [PATH]  -> {"step":"shot","path":PATH,"bytes":N}   (a PNG, 1280x900; PATH defaults to --screenshot)
  quit (or end of input) -> exit 0
Every step is a fresh Chromium (temp profile) that loads the page, leaves it live --wait-ms, then dumps its DOM or
takes the screenshot; so `snapshots` counts the snapshot events one load received, not a running total.
On a harness problem (Chromium failing or too slow, the page not served): {"step":"error","message":...}, exit 2.

Why a proxy: headless Chromium's --dump-dom and --screenshot act when the page's load event fires, which is
before the first snapshot arrives; and --virtual-time-budget never expires while the EventSource is open (virtual
time pauses while a fetch is pending, and an event stream is a fetch that never ends), so Chromium hangs. No CDP,
so Chromium loads the page through a small proxy here that forwards every request to the hub unchanged, but holds
the end of the page's own response for --wait-ms: the document is whole, its script runs and the EventSource
(relative URL, so through the proxy too) streams, but `load` fires only once the connection closes. The DOM
dumped is the live page's, --wait-ms later.
Python 3.11 standard library only.
"""
import argparse, contextlib, html.parser, http.client, http.server, json, os, shutil, signal, subprocess
import sys, tempfile, threading, time, urllib.parse

from chromium_processes import become_subreaper, descendants, kill_all, log_tail

VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}
HOP_BY_HOP = {'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'te', 'trailer', 'upgrade',
              'proxy-connection'}


class HarnessError(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--url', required=True, help='the status page, http://127.0.0.1:PORT/status')
    p.add_argument('--screenshot', required=True, help='where `shot` writes its PNG')
    p.add_argument('--timeout', type=float, default=60, help='seconds one step (one Chromium run) may take')
    p.add_argument('--wait-ms', type=int, default=4000, help='how long the page stays live before the dump/shot')
    p.add_argument('--chromium', default=shutil.which('chromium') or '/usr/bin/chromium')
    args = p.parse_args()
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != 'http' or not url.hostname:
        p.error('--url must be http://HOST:PORT/PATH')
    args.upstream = (url.hostname, url.port or 80)
    args.page_path = (url.path or '/') + (f'?{url.query}' if url.query else '')
    return args


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(',', ':')) + '\n')
    sys.stdout.flush()


class Proxy:
    """Forwards GETs to the hub; the page itself is sent whole but its connection closed only after wait_ms."""

    def __init__(self, args):
        self.args, self.lock = args, threading.Lock()
        self.page_requests, self.page_problem = 0, None
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.0'  # bodies end when the connection closes: no framing to rewrite
            log_message = lambda self, *a: None

            def do_GET(self):
                proxy.forward(self)

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}{args.page_path}'

    def reset(self):
        with self.lock:
            self.page_requests, self.page_problem = 0, None

    def forward(self, handler):
        is_page = handler.path == self.args.page_path
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP | {'host'}}
        # The hub sends a snapshot every second: a read this slow means it is gone.
        upstream = http.client.HTTPConnection(*self.args.upstream, timeout=30)
        try:
            try:
                upstream.request('GET', handler.path, headers=headers)
                resp = upstream.getresponse()
            except OSError as e:
                if is_page:
                    self.note_page(f'GET {handler.path}: {e}')
                return handler.send_error(502, explain=str(e))
            body = resp.read() if is_page else None
            if is_page:
                self.note_page(None if resp.status == 200 else f'GET {handler.path}: HTTP {resp.status}')
            handler.send_response(resp.status, resp.reason)
            for name, value in resp.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    handler.send_header(name, value)
            handler.send_header('Connection', 'close')
            handler.end_headers()
            if is_page:
                handler.wfile.write(body)
                handler.wfile.flush()
                time.sleep(self.args.wait_ms / 1000)  # the document is not finished: no load event yet
                return
            while chunk := resp.read1(65536):  # an event stream: pass each piece on as it comes
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except OSError:
            pass  # Chromium went away (its step is over), or the hub did
        finally:
            upstream.close()

    def note_page(self, problem):
        with self.lock:
            self.page_requests += 1
            self.page_problem = self.page_problem or problem


class StatusDOM(html.parser.HTMLParser):
    """Reads the few things a test checks from Chromium's --dump-dom output."""
    TEXT_IDS = ('streams', 'events-delivered', 'state')

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts, self.snapshots, self.worker_rows = {}, None, 0
        self.capture, self.depth = None, 0  # the id whose text is being collected; element depth within it
        self.in_workers = 0  # element depth within tbody#workers (0: outside)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'body' and 'data-snapshots' in attrs:
            self.snapshots = attrs['data-snapshots']
        if self.in_workers:
            if tag == 'tr' and self.in_workers == 1:
                self.worker_rows += 1
            if tag not in VOID:
                self.in_workers += 1
        elif tag == 'tbody' and attrs.get('id') == 'workers':
            self.in_workers = 1
        if self.capture:
            self.depth += tag not in VOID
        elif attrs.get('id') in self.TEXT_IDS and tag not in VOID:
            self.capture, self.depth = attrs['id'], 1
            self.texts[self.capture] = ''

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.in_workers:
            self.in_workers -= 1
        if self.capture:
            self.depth -= 1
            if self.depth == 0:
                self.capture = None

    def handle_data(self, data):
        if self.capture:
            self.texts[self.capture] += data

    def result(self):
        def integer(text):
            with contextlib.suppress(TypeError, ValueError):
                return int(text.strip())
            return None
        state = self.texts.get('state')
        return {'step': 'dom', 'streams': integer(self.texts.get('streams')),
                'eventsDelivered': integer(self.texts.get('events-delivered')), 'workers': self.worker_rows,
                'state': state.strip() if state is not None else None, 'snapshots': integer(self.snapshots)}


def stop_chromium(proc):
    """Chromium's process group and every other descendant, killed and reaped."""
    left = not kill_all(proc.pid)
    if left:
        raise HarnessError(f'chromium processes survived SIGKILL: {sorted(descendants())}')


def run_chromium(args, proxy, tmp, step, extra):
    """One Chromium run on the page (through the proxy); returns what it wrote on stdout."""
    work = tempfile.mkdtemp(prefix=f'{step}-', dir=tmp)
    out_path, log_path = os.path.join(work, 'stdout'), os.path.join(work, 'chromium.log')
    flags = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
             '--no-default-browser-check', '--disable-extensions', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', '--mute-audio', f'--user-data-dir={work}/profile']
    # setpriv --pdeathsig: should we be SIGKILLed (no cleanup possible), the browser dies with us.
    prefix = ['setpriv', '--pdeathsig', 'KILL', '--'] if shutil.which('setpriv') else []
    # Debian's build always starts crashpad handlers; their database follows XDG_CONFIG_HOME: keep it in tmp.
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(work, 'config'))
    proxy.reset()
    with open(out_path, 'wb') as out, open(log_path, 'wb') as log:
        proc = subprocess.Popen(prefix + [args.chromium, *flags, *extra, proxy.url], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=log, env=env, start_new_session=True)
    try:
        try:
            status = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f'{step}: chromium still running after {args.timeout:g}s; log: {log_tail(log_path)}')
    finally:
        stop_chromium(proc)
    if proxy.page_problem:
        raise HarnessError(f'{step}: the page was not served: {proxy.page_problem}')
    if status != 0 or proxy.page_requests == 0:
        what = f'exited {status}' if status else 'never asked for the page'
        raise HarnessError(f'{step}: chromium {what}; log: {log_tail(log_path)}')
    with open(out_path, 'rb') as f:
        return f.read().decode(errors='replace')


def dom_step(args, proxy, tmp):
    dom = run_chromium(args, proxy, tmp, 'dom', ['--dump-dom'])
    if '<html' not in dom.lower():
        raise HarnessError(f'dom: chromium dumped no document ({len(dom)} characters)')
    parser = StatusDOM()
    parser.feed(dom)
    parser.close()
    return parser.result()


def shot_step(args, proxy, tmp, path):
    path = os.path.abspath(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # so a stale file cannot pass for this step's screenshot
    run_chromium(args, proxy, tmp, 'shot', ['--window-size=1280,900', '--hide-scrollbars', f'--screenshot={path}'])
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise HarnessError(f'shot: no screenshot written: {e}')
    if not data.startswith(b'\x89PNG\r\n\x1a\n'):
        raise HarnessError(f'shot: {path} is not a PNG ({len(data)} bytes)')
    return {'step': 'shot', 'path': path, 'bytes': len(data)}


def main():
    args = parse_args()
    # Chromium's helpers outlive the browser process for a moment; as subreaper we inherit and reap them.
    become_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the test's own timeout still runs the cleanup
    tmp = tempfile.mkdtemp(prefix='sse-status-page-check-')
    try:
        proxy = Proxy(args)
        for line in sys.stdin:
            command, *rest = line.split() or ['']
            if command == '':
                continue
            if command == 'quit':
                break
            if command == 'dom' and not rest:
                emit(dom_step(args, proxy, tmp))
            elif command == 'shot' and len(rest) <= 1:
                emit(shot_step(args, proxy, tmp, rest[0] if rest else args.screenshot))
            else:
                raise HarnessError(f'unknown command {line.strip()!r} (dom, shot [PATH], quit)')
        return 0
    except (HarnessError, OSError) as e:
        emit({'step': 'error', 'message': str(e)})
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
