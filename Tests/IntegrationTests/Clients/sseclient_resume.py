"""Resume an SSE stream with sseclient-py (a client this project did not write).

Usage: sseclient_resume.py PORT USER_TOKEN PUBLISHER_TOKEN
Reads one event, disconnects, has four published, reconnects with Last-Event-ID, prints what it got.
"""
import json
import sys
import time

import requests
import sseclient

port, token, publisher = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"


def publish(n):
    r = requests.post(f"{base}/api/sse/publish", headers={"Authorization": f"Bearer {publisher}"},
                      json={"event": "num", "data": {"n": n}}, timeout=5)
    r.raise_for_status()


def stream(headers):
    response = requests.get(f"{base}/api/sse/stream", params={"token": token}, stream=True,
                            headers={"Accept": "text/event-stream", **headers}, timeout=10)
    response.raise_for_status()
    return response, sseclient.SSEClient(response).events()


def wait_for_clients(n):
    deadline = time.time() + 10
    while time.time() < deadline:
        if requests.get(f"{base}/api/health", timeout=5).json()["services"]["sse"]["totalClients"] == n:
            return
        time.sleep(0.02)
    raise SystemExit(f"never saw {n} clients")


response, events = stream({})
first = next(events)
assert first.event == "connected", first.event
wait_for_clients(1)
publish(0)
seen = next(events)
assert seen.event == "num" and json.loads(seen.data) == {"n": 0}, (seen.event, seen.data)
last_id = seen.id
response.close()
wait_for_clients(0)

for n in range(1, 5):
    publish(n)

response, events = stream({"Last-Event-ID": last_id})
got = []
for event in events:
    if event.event == "num":
        got.append(json.loads(event.data)["n"])
    if len(got) == 4:
        break
response.close()
print("resumed:", got)
sys.exit(0 if got == [1, 2, 3, 4] else 1)
