"""HTTP test doubles for the LLM providers, served on 127.0.0.1 by the tests themselves.

`FakeGemini` speaks the generateContent REST shape (POST /v1beta|v1/models/<model>:generateContent,
reply candidates[0].content.parts[0].text + usageMetadata) and `FakeOpenAI` speaks chat
completions, so the real google-genai and openai SDK clients talk to them unchanged. Both label
sentences with a keyword oracle and play a script of faults, one per request:
  "ok", "429", "500", "timeout" (answer after `delay_s`, after the client gave up), "garbage"
  (200 with text that is not JSON), "truncated" (JSON cut in half), "drop1" (omit the last id),
  "unknown_id" (an extra answer with an id that was never asked), "unknown_label" (first answer
  gets a label outside the classes), "401echo" (401 whose message echoes the key it received, as
  a careless proxy might), "429echo" (the same inside a retryable 429), "body_garbage" (200 whose HTTP body is not JSON at all),
  "stall" (no reply until the test sets `release`; `stalled` is set when it arrives).
Every request is recorded (path, headers, body) so tests can count paid calls.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POSITIVE = ("good", "great", "love", "excellent", "최고")
NEGATIVE = ("bad", "awful", "hate", "terrible", "최악")


def oracle(text: str) -> str:
    t = text.lower()
    if any(w in t for w in POSITIVE):
        return "positive"
    if any(w in t for w in NEGATIVE):
        return "negative"
    return "neutral"


def items_from_prompt(prompt: str) -> list[dict]:
    return json.loads(prompt[prompt.index("[") :])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class FakeLLM:
    def __init__(self, *, faults=(), delay_s: float = 1.0, echo_key: bool = False):
        self.faults = list(faults)
        self.echo_key = echo_key  # a careless server: quotes the key back in every reply text
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.stalled, self.release = threading.Event(), threading.Event()  # fault "stall"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    fault = fake.faults.pop(0) if fake.faults else "ok"
                if fault == "stall":  # hold the reply until the test releases it
                    fake.stalled.set()
                    fake.release.wait(60)
                    fault = "ok"
                try:
                    fake.handle(self, body, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # -- helpers ------------------------------------------------------------------------------
    def send(self, h, status: int, payload, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def answers(self, items: list[dict], fault: str, key: str = "") -> list[dict]:
        echo = f" (key {key})" if self.echo_key else ""
        out = [
            {
                "id": it["id"],
                "label": oracle(it["text"]),
                "confidence": 0.9,
                "rationale": f"keyword rule for {it['id']}{echo}",
            }
            for it in items
        ]
        if fault == "drop1" and out:
            out = out[:-1]
        elif fault == "unknown_id":
            out.append({"id": "999", "label": "positive", "confidence": 0.99, "rationale": "x"})
        elif fault == "unknown_label" and out:
            out[0] = dict(out[0], label="ecstatic")
        return out

    def received_key(self, h) -> str:
        return h.headers.get("x-goog-api-key") or h.headers.get("authorization", "")

    def fault_response(self, h, fault: str) -> bool:
        """Answer `fault` if it is an HTTP-level fault; True if handled."""
        if fault == "429":
            self.send(h, 429, self.error(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"))
        elif fault == "500":
            self.send(h, 500, self.error(500, "Internal error encountered.", "INTERNAL"))
        elif fault == "429echo":
            self.send(h, 429, self.error(429, f"Quota exceeded for key {self.received_key(h)}", "RESOURCE_EXHAUSTED"))
        elif fault == "401echo":
            self.send(h, 401, self.error(401, f"API key not valid: {self.received_key(h)}", "UNAUTHENTICATED"))
        elif fault == "timeout":
            time.sleep(self.delay_s)
            self.send(h, 503, self.error(503, "late", "UNAVAILABLE"))
        elif fault == "body_garbage":
            self.send(h, 200, None, raw=b"<html>502 Bad Gateway</html>")
        else:
            return False
        return True

    @staticmethod
    def text_fault(text: str, fault: str) -> str:
        if fault == "garbage":
            return "Sure! Here are the labels you asked for: positive, negative..."
        if fault == "truncated":
            return text[: len(text) // 2]
        return text


class FakeGemini(FakeLLM):
    PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):generateContent$")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def error(code, message, status):
        return {"error": {"code": code, "message": message, "status": status}}

    def handle(self, h, body, fault):
        m = self.PATH.match(h.path.split("?")[0])
        if not m:
            self.send(h, 404, self.error(404, f"no route {h.path}", "NOT_FOUND"))
            return
        if self.fault_response(h, fault):
            return
        prompt = body["contents"][0]["parts"][0]["text"]
        schema = body.get("generationConfig", {}).get("responseSchema", {})
        if schema.get("type", "").upper() == "ARRAY":
            text = json.dumps(self.answers(items_from_prompt(prompt), fault, self.received_key(h)))
        else:  # a review request: an object with the schema's properties
            text = json.dumps(review_reply(schema, self.received_key(h) if self.echo_key else ""))
        text = self.text_fault(text, fault)
        p, c = len(prompt) // 4 + 50, len(text) // 4
        self.send(
            h,
            200,
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
                ],
                "usageMetadata": {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c},
                "modelVersion": m.group(2),
            },
        )


class FakeOpenAI(FakeLLM):
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def error(code, message, status):
        return {"error": {"message": message, "type": status, "code": code}}

    def handle(self, h, body, fault):
        if h.path.split("?")[0] != "/v1/chat/completions":
            self.send(h, 404, self.error(404, f"no route {h.path}", "not_found"))
            return
        if self.fault_response(h, fault):
            return
        prompt = body["messages"][-1]["content"]
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema", {})
        props = schema.get("properties", {})
        if "answers" in props or "[" in prompt and "Label these sentences" in prompt:
            out = self.answers(items_from_prompt(prompt), fault, self.received_key(h))
            payload = {"answers": out} if "answers" in props else out
        else:
            payload = review_reply(schema, self.received_key(h) if self.echo_key else "")
        text = self.text_fault(json.dumps(payload), fault)
        p, c = len(prompt) // 4 + 50, len(text) // 4
        self.send(
            h,
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "local"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            },
        )


def review_reply(schema: dict, echo: str = "") -> dict:
    """A canned structured review: every string property gets a sentence, arrays two items."""
    out = {}
    tail = f" Sent with key {echo}." if echo else ""
    for name, prop in (schema.get("properties") or {}).items():
        t = str(prop.get("type", "string")).lower()
        out[name] = (
            [f"{name} point one{tail}", f"{name} point two"]
            if t == "array"
            else f"The {name} written by the fake reviewer.{tail}"
        )
    return out
