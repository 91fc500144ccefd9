"""Serve a local Hugging Face causal LM behind a minimal OpenAI-compatible API.

``python -m mowe.scoring.serve --model DIR [--host 127.0.0.1] [--port 8000]``

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (prompt in, greedy text out),
``POST /v1/chat/completions`` (the model's chat template is applied), ``GET /health``.
This is for judging with a model that fits one machine and for trying the judge client
without vLLM; for a 70B judge, use vLLM's server (same API). Requests are served by
threads; generation itself is serialised (one model, one forward at a time).
"""

import argparse
import json
import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)


class LocalGenerator:
    """Greedy generation from a local model folder, one request at a time."""

    def __init__(self, model_dir, device="cpu", default_max_tokens=128):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"model folder {model_dir} does not exist")
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
        self.model.to(device).eval()
        self.device = device
        self.default_max_tokens = default_max_tokens
        self.name = os.path.basename(os.path.normpath(model_dir))
        self._lock = threading.Lock()

    def complete(self, prompt, max_tokens=None, chat=False):
        if chat:
            ids = self.tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, return_tensors="pt",
                return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        ids = ids.to(self.device)
        with self._lock, self.torch.no_grad():
            out = self.model.generate(
                ids, attention_mask=self.torch.ones_like(ids), do_sample=False,
                max_new_tokens=int(max_tokens or self.default_max_tokens),
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def make_handler(complete, model_name):
    """A request handler class answering the OpenAI-style endpoints.

    Parameters
    ----------
    complete : callable
        ``complete(prompt_or_messages, max_tokens, chat) -> str``.
    model_name : str
        Name reported by ``/v1/models``.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # route to logging, not stderr spam
            logger.info("%s " + fmt, self.address_string(), *args)

        def _send(self, code, payload):
            data = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name,
                                                             "object": "model"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                self._send(400, {"error": {"message": "body is not JSON"}})
                return
            route = self.path.rstrip("/")
            try:
                if route.endswith("/chat/completions"):
                    text = complete(body["messages"], body.get("max_tokens"), True)
                    choice = {"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": text}}
                    kind = "chat.completion"
                elif route.endswith("/completions"):
                    prompt = body["prompt"]
                    prompt = prompt[0] if isinstance(prompt, list) else prompt
                    text = complete(prompt, body.get("max_tokens"), False)
                    choice = {"index": 0, "finish_reason": "stop", "text": text}
                    kind = "text_completion"
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
            except KeyError as error:
                self._send(400, {"error": {"message": f"missing field {error}"}})
                return
            except Exception as error:  # noqa: BLE001 - report, keep serving
                logger.exception("generation failed")
                self._send(500, {"error": {"message": f"generation failed: {error}"}})
                return
            self._send(200, {"object": kind, "model": model_name, "choices": [choice]})

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max_tokens", type=int, default=128,
                        help="default generation length when a request names none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        generator = LocalGenerator(args.model, args.device, args.max_tokens)
    except (FileNotFoundError, OSError) as error:
        sys.exit(f"error: {error}")
    server = ThreadingHTTPServer((args.host, args.port),
                                 make_handler(generator.complete, generator.name))
    logger.info("serving %s on http://%s:%d/v1", generator.name, args.host,
                server.server_address[1])
    print(f"READY http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
