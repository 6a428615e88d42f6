"""Deliveries per second per channel, through the outbox, against local fake servers.

    python bench/channels.py [--count 3000]

A fresh workspace (bench/out/ws-channels, 3,000 customers with a mobile number; the texts
are service messages, so the consent check runs and finds no opt-out) with a webhook
receiver, the three team chat robots (企业微信, 钉钉, 飞书 with signing secrets) and the two
SMS providers (阿里云, 腾讯云) all pointed at one local fake server process that answers
each as the provider does when it accepts (``errcode: 0``, ``Code: OK``,
``SendStatusSet[].Code: Ok``). For each channel, ``--count`` deliveries are queued in the
outbox and timed until the dispatcher (``dispatch_due`` in a loop, 8 in parallel, as the
real-time worker runs it) has delivered them all: this includes reading the customer, the
consent check, rendering, signing, the post and settling each row (the robots' documented
rate limits are lifted for this). Baseline in the same run: the same number of posts of a
body of the same size straight to the same fake from 8 client threads (no tierwise in
between).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_reads import free_port  # noqa: E402
from common import OUT, report  # noqa: E402

WS = OUT / "ws-channels"

FAKE = r"""
# Answers every channel's request as its provider does on success; counts per path.
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ANSWERS = {
    "/hook": b"ok",
    "/wecom": json.dumps({"errcode": 0, "errmsg": "ok"}).encode(),
    "/dingtalk": json.dumps({"errcode": 0, "errmsg": "ok"}).encode(),
    "/feishu": json.dumps({"code": 0, "msg": "success"}).encode(),
    "/aliyun": json.dumps({"Code": "OK", "Message": "OK", "BizId": "1^0"}).encode(),
    "/tencent": json.dumps({"Response": {"SendStatusSet": [{"Code": "Ok"}],
                                         "RequestId": "r"}}).encode(),
}
counts = {path: 0 for path in ANSWERS}
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        path = self.path.split("?")[0]
        with lock:
            counts[path] += 1
        body = ANSWERS[path]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        body = json.dumps(counts).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

CHANNELS = {
    "webhook": ("/hook", {"type": "webhook", "url": "{base}/hook"}),
    "wecom": ("/wecom", {"type": "notify", "robot": "wecom"}),
    "dingtalk": ("/dingtalk", {"type": "notify", "robot": "dingtalk"}),
    "feishu": ("/feishu", {"type": "notify", "robot": "feishu"}),
    "sms_aliyun": ("/aliyun", {"type": "sms", "sender": "shop", "template": "SMS_153055065",
                               "params": {"name": "{{ customer.name }}"}, "purpose": "service"}),
    "sms_tencent": ("/tencent", {"type": "sms", "sender": "care", "template": "1234567",
                                 "params": {"name": "{{ customer.name }}"},
                                 "purpose": "service"}),
}


def workspace(base: str, customers: int) -> None:
    import tierwise
    from tierwise.ingest.readers import RecordsSource

    shutil.rmtree(WS, ignore_errors=True)
    robots = {name: {"platform": name, "url_env": f"TW_BENCH_{name.upper()}_URL",
                     **({"secret_env": "TW_BENCH_SECRET"} if name != "wecom" else {})}
              for name in ("wecom", "dingtalk", "feishu")}
    senders = {
        "shop": {"provider": "aliyun", "sign_name": "某某商城", "key_id_env": "TW_BENCH_ID",
                 "secret_env": "TW_BENCH_SECRET", "url_env": "TW_BENCH_ALIYUN_URL"},
        "care": {"provider": "tencent", "sign_name": "某某商城", "app_id": "1400000001",
                 "key_id_env": "TW_BENCH_ID", "secret_env": "TW_BENCH_SECRET",
                 "url_env": "TW_BENCH_TENCENT_URL"}}
    for name in ("wecom", "dingtalk", "feishu", "aliyun", "tencent"):
        os.environ[f"TW_BENCH_{name.upper()}_URL"] = f"{base}/{name}"
    os.environ["TW_BENCH_SECRET"] = "SECbench0123456789"
    os.environ["TW_BENCH_ID"] = "LTAIbench"
    # the platforms' rate limits (20 a minute for two of the robots) lifted: this measures
    # the delivery path, not the cap
    ws = tierwise.init(WS, webhook_allowed_targets=["127.0.0.1"], robots=robots,
                       sms_senders=senders, locale="zh-CN",
                       rate_limits={f"robot:{name}": 10**6 for name in robots},
                       message_costs={"sms:shop": 0.045, "sms:care": 0.05})
    ws.import_source("customers", RecordsSource.from_dicts("bench", [
        {"customer_id": f"B{i:06d}", "name": f"客户{i}", "phone": f"+86139{i:08d}",
         "city": "上海"} for i in range(customers)]))
    ws.close()


def run_channel(name: str, base: str, count: int) -> float:
    """Deliveries per second of ``count`` queued deliveries on channel ``name``."""
    import tierwise
    from tierwise.actions import dispatch
    from tierwise.actions.channels import Channels
    from tierwise.actions.outbox import enqueue
    from tierwise.definitions.automations import Trigger
    from tierwise.store.control import utcnow

    path, spec = CHANNELS[name]
    action = Trigger.model_validate({
        "key": "bench", "on": {"event": "enter", "segment": "bench"},
        "action": {k: v.format(base=base) if isinstance(v, str) else v
                   for k, v in spec.items()}}).action
    ws = tierwise.open(WS)
    with ws.control.write() as conn:
        enqueue(conn, f"bench:{name}", "enter", action,
                [{"customer_id": f"B{i:06d}", "segment": "bench"} for i in range(count)],
                utcnow())
    before = httpx.get(base).json()[path]
    channels = Channels(ws)
    done = 0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(dispatch.PARALLEL) as pool:
        while done < count:
            outcome = dispatch.dispatch_due(ws, channels, pool=pool)
            if not outcome:
                break
            if set(outcome) - {"delivered"}:
                raise SystemExit(f"{name}: {dict(outcome)}; see the outbox of {WS}")
            done += outcome["delivered"]
    seconds = time.perf_counter() - t0
    channels.close()
    ws.close()
    assert httpx.get(base).json()[path] == before + count
    return count / seconds


def direct(base: str, path: str, count: int, size: int) -> float:
    body = b"x" * size

    def post(part: range) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in part:
                client.post(f"{base}{path}", content=body)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, [range(i, count, 8) for i in range(8)]))
    return count / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    fake = subprocess.Popen([sys.executable, "-c", FAKE, str(port)])
    try:
        for _ in range(100):
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        workspace(base, args.count)
        results = []
        for name, (path, _) in CHANNELS.items():
            served = run_channel(name, base, args.count)
            baseline = direct(base, path, args.count, 400)
            results.append({"channel": name, "deliveries": args.count,
                            "deliveries_per_second": round(served, 1),
                            "baseline_direct_posts_per_second": round(baseline, 1),
                            "ratio": round(served / baseline, 2)})
            print(results[-1], file=sys.stderr)
        report("channels", results)
    finally:
        fake.terminate()
        fake.wait(10)


if __name__ == "__main__":
    main()
