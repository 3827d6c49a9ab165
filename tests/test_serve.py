"""transformers_serve's process handling, with a stand-in `transformers` command that talks a lot."""

import json
import stat
import sys
import urllib.request

import pytest

from cbt_llm.errors import CbtLlmError
from cbt_llm.models import serve

pytestmark = pytest.mark.slow  # starts a process and a server

CHATTY = """#!{python}
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
sys.stderr.write("loading weights " + "." * 1000 + "\\n" * 1)
for _ in range(400):  # 400 KB of log before it listens: more than a pipe holds
    sys.stderr.write("x" * 1023 + "\\n")
sys.stderr.flush()
if "{fail}" == "yes":
    sys.stderr.write("boom: the model folder is broken\\n")
    sys.exit(3)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sys.stderr.write("request " + "y" * 2000 + "\\n")  # and it logs every request
        body = json.dumps({{"object": "list", "data": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def fake_transformers(folder, fail=False):
    script = folder / "transformers"
    script.write_text(CHATTY.format(python=sys.executable, fail="yes" if fail else "no"), encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (folder / "python").symlink_to(sys.executable)
    return folder / "python"


def test_a_chatty_server_does_not_block_and_its_log_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(serve.sys, "executable", str(fake_transformers(tmp_path)))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with serve.transformers_serve("some-model", timeout=30) as base_url:
        for _ in range(100):  # 200 KB more of request logs while it runs
            with opener.open(f"{base_url}/models") as reply:
                assert json.loads(reply.read())["object"] == "list"
    log = tmp_path / "serve.log"
    with serve.transformers_serve("some-model", timeout=30, log=log) as base_url:
        for _ in range(100):
            opener.open(f"{base_url}/models").close()
    text = log.read_text(encoding="utf-8")
    assert text.startswith("loading weights") and text.count("request ") >= 100


def test_a_server_that_exits_is_reported_with_its_log_file(tmp_path, monkeypatch):
    monkeypatch.setattr(serve.sys, "executable", str(fake_transformers(tmp_path, fail=True)))
    with pytest.raises(CbtLlmError, match=r"(?s)exited with code 3.*boom: the model folder is broken") as err:
        with serve.transformers_serve("some-model", timeout=30):
            pass
    log = str(err.value).split("log: ")[1].split(")")[0]
    assert "boom" in open(log, encoding="utf-8").read()
