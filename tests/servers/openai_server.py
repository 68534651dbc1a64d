#!/usr/bin/python3
"""openai_server.py: a deterministic OpenAI-compatible server for the LLM client tests.

Standard library only. Serves POST /v1/chat/completions, POST /v1/completions and
GET /v1/models on 127.0.0.1, with answers that depend only on the request (so a
test can tell which reply belongs to which request), and injects faults on demand
so the client's retry, abort and parsing paths can be exercised.

Usage:
  openai_server.py [--port N|0] [--port-file F] [--log F.jsonl] [--latency-ms MS]
                   [--fault-rate P --fault-seed S] [--ctx N] [--models a,b]
                   [--require-key KEY]

  --port 0 picks a free port; it is printed as "PORT <n>" on stdout and written
  to --port-file (atomically) once the server listens.

Fault directives. A request asks for a fault either in an HTTP header
  X-Test-Fault: KIND [k=v ...]
or anywhere in its text (message contents or prompt) as
  [[fault:KIND k=v ...]]
with the optional parameter times=K: only the first K receipts of this exact body
get the fault, later ones are answered normally (so a retry can succeed).
Kinds:
  429        rate limited; retry_after=S sends "Retry-After: S", date=S sends an
             HTTP-date S seconds ahead
  500, 503   server errors with a llama.cpp-shaped / OpenAI-shaped error object
  400 401 402 403 404   client errors with real-shaped bodies (401 quotes the
             bearer token back, as a careless server might)
  slow       ms=N: wait N ms before answering normally
  drop       send the headers and half the body, then close the connection
  reset      close the connection without any reply
  malformed  HTTP 200 with a body that is not JSON
  truncated  HTTP 200 with the first half of a normal body (Content-Length fits)
  error200   HTTP 200 whose body is an error object
  length     finish_reason "length" and the content cut in half
  freetext   ignore response_format and answer free text
  nologprobs ignore logprobs
  nullcontent  message.content is null
A tag [[tag:NAME]] in the text names the request in the log and in the reply.

--fault-rate P draws, per request, a random fault among 429 (retry_after=0),
500, 503 and drop with probability P from a seeded generator (--fault-seed).
--ctx N mimics llama.cpp's silent prompt cut: usage.prompt_tokens is at most N.
--require-key KEY answers 401 unless "Authorization: Bearer KEY" is sent.

Log: one JSON line per request received, written when it arrives (before the
reply), with seq, t (epoch seconds), method, path, tag, body_sha256, fault, and
auth_sha256 (SHA-256 of the Authorization header value, null when absent), so a
test can count requests per tag and check a key arrived without the log
holding it.
"""
import argparse
import email.utils
import hashlib
import json
import os
import random
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIRECTIVE = re.compile(r"\[\[fault:([A-Za-z0-9]+)((?:\s+[a-z_]+=[^\s\]]+)*)\s*\]\]")
TAG = re.compile(r"\[\[tag:([^\]]+)\]\]")
TOKEN = re.compile(r"\s*\S+|\s+")


def tokens_of(text):
    """Whitespace-attached word pieces, like GPT-2's ' word' tokens."""
    return TOKEN.findall(text)


def parse_directive(kind, params):
    out = {"kind": kind}
    for kv in params.split():
        k, _, v = kv.partition("=")
        out[k] = v
    return out


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.seen = {}  # body sha256 -> receipts so far
        self.seq = 0
        self.rng = random.Random(args.fault_seed)
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None

    def receipt(self, sha):
        with self.lock:
            self.seen[sha] = self.seen.get(sha, 0) + 1
            return self.seen[sha]

    def random_fault(self):
        with self.lock:
            if self.args.fault_rate <= 0 or self.rng.random() >= self.args.fault_rate:
                return None
            kind = self.rng.choice(["429", "500", "503", "drop"])
        return {"kind": kind, "retry_after": "0"} if kind == "429" else {"kind": kind}

    def write_log(self, entry):
        if not self.log:
            return
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.write(json.dumps(entry, sort_keys=True) + "\n")
            self.log.flush()


def text_of(req):
    if isinstance(req.get("messages"), list):
        return "\n".join(str(m.get("content", "")) for m in req["messages"] if isinstance(m, dict))
    return str(req.get("prompt", ""))


def last_user(req):
    msgs = [m for m in req.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return str(msgs[-1].get("content", "")) if msgs else ""


def from_schema(schema, seed):
    """A value of the schema's shape; integers deterministic from seed."""
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        return {k: from_schema(v, seed + i) for i, (k, v) in enumerate(props.items())}
    if t == "array":
        n = schema.get("minItems", schema.get("maxItems", 3))
        item = schema.get("items", {"type": "integer"})
        return [from_schema(item, seed + 7 * i) for i in range(n)]
    if t == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 10)
        return lo + (seed * 2654435761 % (hi - lo + 1))
    if t == "number":
        return round((seed % 100) / 10.0, 1)
    if t == "boolean":
        return seed % 2 == 0
    return "s%d" % seed


def chat_logprobs(content, top_n):
    out = []
    for i, tok in enumerate(tokens_of(content)):
        lp = -0.05 * (i % 7 + 1)
        entry = {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8")), "top_logprobs": []}
        for j in range(top_n):
            alt = tok if j == 0 else "%s~%d" % (tok.strip() or "_", j)
            entry["top_logprobs"].append(
                {"token": alt, "logprob": lp - j, "bytes": list(alt.encode("utf-8"))})
        out.append(entry)
    return {"content": out, "refusal": None}


def completion_logprobs(prompt_toks, gen_toks, top_n, echo):
    toks = (prompt_toks if echo else []) + gen_toks
    lps, tops, offs, off = [], [], [], 0
    for i, tok in enumerate(toks):
        offs.append(off)
        off += len(tok)
        if echo and i == 0:  # vLLM: the first prompt token has no logprob
            lps.append(None)
            tops.append(None)
            continue
        lp = -0.1 * (i % 5 + 1)
        lps.append(lp)
        top = {tok: lp}
        for j in range(1, top_n):
            top["%s~%d" % (tok.strip() or "_", j)] = lp - j
        tops.append(top)
    return {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offs}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the body would wait
    # for the client's delayed ACK (40 ms) on every keep-alive reply
    disable_nagle_algorithm = True
    server_version = "openai-test/1"

    def log_message(self, fmt, *a):  # quiet
        pass

    # -- replies --------------------------------------------------------------
    def send_json(self, code, obj, extra_headers=()):
        body = json.dumps(obj).encode("utf-8")
        self.send_raw(code, body, extra_headers)

    def send_raw(self, code, body, extra_headers=()):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def error_reply(self, code, fault):
        auth = self.headers.get("Authorization", "")
        bodies = {
            400: {"error": {"message": "This model's maximum context length is 4096 tokens.",
                            "type": "invalid_request_error", "param": "messages",
                            "code": "context_length_exceeded"}},
            401: {"error": {"message": "Incorrect API key provided: %s. You can find your API "
                                       "key at https://platform.openai.com/account/api-keys."
                                       % auth.replace("Bearer ", ""),
                            "type": "invalid_request_error", "param": None,
                            "code": "invalid_api_key"}},
            402: {"error": {"message": "Insufficient credits. Add more using "
                                       "https://openrouter.ai/settings/credits",
                            "code": 402}},
            403: {"error": {"message": "Project does not have access to model",
                            "type": "invalid_request_error", "code": "model_not_found"}},
            404: {"error": {"message": "The model `no-such-model` does not exist or you do not "
                                       "have access to it.",
                            "type": "invalid_request_error", "param": None,
                            "code": "model_not_found"}},
            429: {"error": {"message": "Rate limit reached for requests", "type": "requests",
                            "param": None, "code": "rate_limit_exceeded"}},
            500: {"error": {"code": 500, "message": "the request exceeds the available context "
                                                    "size, try increasing it",
                            "type": "server_error"}},
            503: {"error": {"message": "The server is overloaded or not ready yet.",
                            "type": "server_error", "param": None, "code": None}},
        }
        headers = []
        if code == 429:
            if "retry_after" in fault:
                headers.append(("Retry-After", fault["retry_after"]))
            elif "date" in fault:
                when = time.time() + float(fault["date"])
                headers.append(("Retry-After", email.utils.formatdate(when, usegmt=True)))
        self.send_json(code, bodies[code], headers)

    # -- answers ----------------------------------------------------------------
    def answer(self, path, req, fault, tag):
        args = self.server.state.args
        text = text_of(req)
        prompt_toks = tokens_of(text)
        n_prompt = len(prompt_toks)
        if args.ctx:
            n_prompt = min(n_prompt, args.ctx)
        kind = fault["kind"] if fault else None
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        model = req.get("model", "test-model")
        if path == "/v1/chat/completions":
            rf = req.get("response_format") or {}
            if kind != "freetext" and rf.get("type") == "json_schema":
                schema = (rf.get("json_schema") or {}).get("schema") or {}
                content = json.dumps(from_schema(schema, seed), separators=(",", ":"))
            elif kind != "freetext" and rf.get("type") == "json_object":
                content = json.dumps({"reply": "ok %s" % tag})
            else:
                content = "ok %s: %s" % (tag, last_user(req)[:40])
            finish = "stop"
            if kind == "length":
                content = content[: max(1, len(content) // 2)]
                finish = "length"
            msg = {"role": "assistant", "content": None if kind == "nullcontent" else content}
            choice = {"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}
            if req.get("logprobs") and kind != "nologprobs":
                choice["logprobs"] = chat_logprobs(content, int(req.get("top_logprobs", 0)))
            obj = {"id": "chatcmpl-%s" % tag, "object": "chat.completion",
                   "created": int(time.time()), "model": model, "choices": [choice],
                   "usage": {"prompt_tokens": n_prompt,
                             "completion_tokens": len(tokens_of(content)),
                             "total_tokens": n_prompt + len(tokens_of(content))},
                   "system_fingerprint": "fp_test"}
            return obj
        # /v1/completions
        max_tokens = int(req.get("max_tokens", 16))
        gen = "" if max_tokens == 0 else " ok %s" % tag
        gen_toks = tokens_of(gen)
        echo = bool(req.get("echo"))
        choice = {"index": 0, "text": (text if echo else "") + gen,
                  "finish_reason": "length", "logprobs": None, "stop_reason": None}
        if req.get("logprobs") is not None and kind != "nologprobs":
            choice["logprobs"] = completion_logprobs(prompt_toks, gen_toks,
                                                     int(req["logprobs"]), echo)
        return {"id": "cmpl-%s" % tag, "object": "text_completion", "created": int(time.time()),
                "model": model, "choices": [choice],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(gen_toks),
                          "total_tokens": n_prompt + len(gen_toks)}}

    # -- dispatch ---------------------------------------------------------------
    def choose_fault(self, text, sha):
        fault = None
        m = DIRECTIVE.search(text)
        if m:
            fault = parse_directive(m.group(1), m.group(2))
        hdr = self.headers.get("X-Test-Fault")
        if hdr and not fault:
            parts = hdr.split(None, 1)
            fault = parse_directive(parts[0], parts[1] if len(parts) > 1 else "")
        n = self.server.state.receipt(sha)
        if fault and "times" in fault and n > int(fault["times"]):
            fault = None
        if not fault:
            fault = self.server.state.random_fault()
        return fault

    def handle_any(self, method):
        st = self.server.state
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        sha = hashlib.sha256(raw).hexdigest()
        path = self.path.split("?")[0]
        try:
            req = json.loads(raw) if raw else {}
        except ValueError:
            req = None
        text = text_of(req) if isinstance(req, dict) else ""
        m = TAG.search(text)
        tag = m.group(1) if m else sha[:12]
        fault = self.choose_fault(text, sha) if method == "POST" else None
        auth = self.headers.get("Authorization")
        st.write_log({"t": time.time(), "method": method, "path": path, "tag": tag,
                      "body_sha256": sha, "fault": fault["kind"] if fault else None,
                      "auth_sha256": hashlib.sha256(auth.encode()).hexdigest() if auth else None})
        if st.args.latency_ms:
            time.sleep(st.args.latency_ms / 1000.0)
        if st.args.require_key and auth != "Bearer " + st.args.require_key:
            return self.error_reply(401, {})
        if method == "GET":
            if path == "/v1/models":
                ids = st.args.models.split(",")
                return self.send_json(200, {"object": "list", "data": [
                    {"id": i, "object": "model", "created": 0, "owned_by": "test"} for i in ids]})
            return self.send_json(404, {"error": {"message": "no route %s" % path}})
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return self.send_json(404, {"error": {"message": "no route %s" % path}})
        if req is None:
            return self.send_json(400, {"error": {"message": "body is not JSON"}})
        return self.reply_with_fault(path, req, fault, tag)

    def reply_with_fault(self, path, req, fault, tag):
        kind = fault["kind"] if fault else None
        if kind and kind.isdigit():
            return self.error_reply(int(kind), fault)
        if kind == "slow":
            time.sleep(int(fault.get("ms", "1000")) / 1000.0)
        if kind == "reset":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if kind == "malformed":
            return self.send_raw(200, b'{"id": "x", "choices": [oops this is not json}')
        if kind == "error200":
            return self.send_json(200, {"error": {"message": "upstream provider failed",
                                                  "type": "server_error", "code": 502}})
        body = json.dumps(self.answer(path, req, fault, tag)).encode("utf-8")
        if kind == "truncated":
            return self.send_raw(200, body[: len(body) // 2])
        if kind == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        return self.send_raw(200, body)

    def do_POST(self):
        try:
            self.handle_any("POST")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def do_GET(self):
        try:
            self.handle_any("GET")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--fault-rate", type=float, default=0)
    ap.add_argument("--fault-seed", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=0)
    ap.add_argument("--models", default="test-model,test-model-2")
    ap.add_argument("--require-key")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.state = State(args)
    port = srv.server_address[1]
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    print("PORT %d" % port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
