"""Starting a server under test and waiting until it serves: shared by the bench scripts."""
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def models_listed(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
            return r.status == 200 and bool(json.load(r).get("data"))
    except OSError:
        return False


def wait_ready(port, proc, limit=600):
    """Seconds until GET /v1/models lists a model; raises if the process exits or `limit` passes."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            # llmserve lists its configured models while they load: its readiness probe says when they
            # are loaded (503 until then). Peers have no such route (404) and list a model once loaded.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except urllib.error.HTTPError as error:
            if error.code == 404 and models_listed(port):
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready")


def start_llmserve(binary, flags=(), env=None, stdout=subprocess.DEVNULL):
    """Starts llmserve on a free port, waits until its model is loaded; returns the process and base URL."""
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), *flags], env=env, stdout=stdout,
                            stderr=subprocess.STDOUT)
    wait_ready(port, proc)
    return proc, f"http://127.0.0.1:{port}"
