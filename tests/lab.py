"""JupyterLab servers for the tests: start one on localhost, talk to its REST API, run code in its kernels.

A server runs from a given Python environment (the student bundle's fresh venv, or the project's own) with its
Jupyter config, data, runtime and settings folders private to the test, so nothing of the machine's user config
(``~/.jupyter``) changes what it serves.
"""
from __future__ import annotations

import ast
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from grader import cells


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_jupyter_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a Jupyter process whose user-level folders are all under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), IPYTHONDIR=str(home / "ipython"),
               PYTHONDONTWRITEBYTECODE="1", **extra)
    env.pop("MPLBACKEND", None)   # the Makefile's Agg is for the suite's own plots; kernels draw inline
    return env


@dataclass
class LabServer:
    process: subprocess.Popen
    url: str           # http://127.0.0.1:PORT
    token: str
    root: Path
    log: Path

    def lab_url(self, path: str = "") -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}" if path else f"{self.url}/lab?token={self.token}"

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 60):
        """(status, parsed JSON or text) of an API call with the server's token."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


# User settings of the test's private settings folder: no news pop-up over the page, and every cell in the DOM
# (JupyterLab's default windowing leaves cells out of view unrendered, which a test reading outputs cannot use).
TEST_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def start_lab(python_bin: Path, root: Path, home: Path, *, cwd: Path | None = None, timeout: float = 180,
              args: tuple[str, ...] = ()) -> LabServer:
    """``jupyter lab`` from the environment of ``python_bin`` (its bin/ first on PATH), serving ``root``."""
    port, token = free_port(), secrets.token_hex(16)
    for name, values in TEST_SETTINGS.items():
        target = home / "settings" / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    log = home / "lab.log"
    env = private_jupyter_env(home)
    env["PATH"] = str(Path(python_bin).parent) + os.pathsep + env.get("PATH", "")
    command = [str(python_bin), "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--ServerApp.allow_root=True", *args]
    process = subprocess.Popen(command, cwd=cwd or root, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = LabServer(process, f"http://127.0.0.1:{port}", token, Path(root), log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, _ = server.request("GET", "/api/status", timeout=5)
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


# -- running code in a kernel of the server ----------------------------------------------------------------------------
class ServerKernel:
    """A kernel of the server, started for a notebook (so it runs in the notebook's folder), spoken to over the
    server's websocket with the Jupyter messaging protocol."""

    def __init__(self, server: LabServer, notebook: str):
        import websocket

        self.server = server
        status, session = server.request("POST", "/api/sessions", {
            "path": notebook, "type": "notebook", "name": Path(notebook).name, "kernel": {"name": "python3"}})
        assert status == 201, (status, session)
        self.session_id, self.kernel_id = session["id"], session["kernel"]["id"]
        ws_url = server.url.replace("http", "ws", 1)
        self.ws = websocket.create_connection(f"{ws_url}/api/kernels/{self.kernel_id}/channels?token={server.token}",
                                              timeout=300)
        self.client_session = uuid.uuid4().hex

    def execute(self, code: str, timeout: float = 300) -> dict:
        """Run ``code``; returns {"status": ..., "error": "ename: evalue" or "", "stdout": ...}."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": self.client_session,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        result = {"status": None, "error": "", "stdout": ""}
        idle = False
        deadline = time.monotonic() + timeout
        while (result["status"] is None or not idle) and time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "execute_reply":
                result["status"] = msg["content"]["status"]
            elif kind == "error":
                result["error"] = f"{msg['content']['ename']}: {msg['content']['evalue']}"
            elif kind == "stream" and msg["content"].get("name") == "stdout":
                result["stdout"] += msg["content"]["text"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        if result["status"] is None:
            raise TimeoutError(f"no reply within {timeout:.0f} s to:\n{code[:500]}")
        return result

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.server.request("DELETE", f"/api/sessions/{self.session_id}")


# -- which cells of a released notebook run before any exercise is done ----------------------------------------------
def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    used, defined = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return used, defined


def python_source(source: str) -> str:
    """A code cell's source without IPython magics and shell lines."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def independent_cells(nb) -> list[int]:
    """Indices of the code cells that do not depend on an exercise: not a solution or test cell, and using no name
    that a solution cell defines or that a cell depending on one defines (transitively)."""
    tainted: set[str] = set()
    keep = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        used, defined = _names(ast.parse(python_source(cell.source)))
        if cells.is_solution(cell):
            tainted |= defined
            continue
        if cells.is_test(cell):
            continue
        if used & tainted:
            tainted |= defined
            continue
        keep.append(index)
    return keep
