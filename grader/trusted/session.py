"""One student kernel, driven from the trusted grader: run cells, call functions, survive the kernel's death.

:class:`KernelSession` owns the kernel of one submission. It runs code with a deadline that is enforced by
killing the kernel (a student can ignore SIGINT, so there is no polite interrupt first), caps the output a cell
may produce, notices a dead kernel (segfault, ``os._exit``, the OOM killer), and restarts it on request.
:meth:`KernelSession.request` is the trusted side of the bridge: it sends one request to the kernel-side
helper and returns the kernel's reply decoded by :mod:`grader.trusted.wire`.
"""
from __future__ import annotations

import json
import logging
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat
import zmq
from nbformat import NotebookNode

from . import wire
from .kernels import Limits, kernel_env, make_kernel_manager


BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
KERNEL_LOG = logging.getLogger("grader.kernels")
KERNEL_LOG.addHandler(logging.NullHandler())
KERNEL_LOG.propagate = False


class KernelDied(Exception):
    """The student's kernel died (segfault, ``os._exit``, out of memory) while running student code."""


class StudentCodeTimeout(Exception):
    """Student code ran past its time limit; the kernel was killed."""


class MemoryLimitExceeded(KernelDied):
    """Student code used more memory than the kernel's memory limit (its cgroup); the kernel was stopped."""


class OutputLimitExceeded(Exception):
    """Student code printed more than the output limit; the kernel was killed."""


class KernelUnavailable(Exception):
    """The kernel is dead and may not be restarted again (restart limit reached, or notebook time is up)."""


@dataclass(frozen=True)
class Options:
    """Limits of one grading run. Times in seconds, sizes in bytes."""

    cell_timeout: float = 120.0
    call_timeout: float = 60.0
    notebook_timeout: float = 1800.0
    startup_timeout: float = 60.0
    max_call_bytes: int = 64 << 20
    max_output_bytes: int = 1 << 20
    kill_output_bytes: int = 16 << 20
    max_printed_in_call: int = 4096
    max_restarts: int = 3
    sandbox: str = "auto"
    execution: str = "autograde"
    blas_threads: int = 0   # threads numpy's BLAS may use in the kernel (0: its default, all cores)
    limits: Limits | None = None          # the sandbox's resource limits (None: the defaults)


@dataclass
class RunResult:
    """What running one piece of code in the kernel gave."""

    status: str  # "ok" | "error" | "timeout" | "died" | "memory_limit" | "output_limit"
    outputs: list = field(default_factory=list)
    payloads: list = field(default_factory=list)
    printed: str = ""
    seconds: float = 0.0

    @property
    def fatal(self) -> bool:
        return self.status in ("timeout", "died", "memory_limit", "output_limit")


def error_output(ename: str, evalue: str, detail: str | None = None) -> NotebookNode:
    """An nbformat error output (a grade cell holding one scores 0)."""
    lines = [f"{ename}: {evalue}"] + ([detail] if detail else [])
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=lines)


FATAL_MESSAGES = {
    "timeout": ("StudentCodeTimeout", "the code ran longer than the limit of {limit:g} s and the kernel was stopped"),
    "died": ("KernelDied", "the kernel died while running this code (a crash, os._exit, or running out of memory)"),
    "output_limit": ("OutputLimitExceeded", "the code printed more than {kill} bytes and the kernel was stopped"),
    "memory_limit": ("MemoryLimitExceeded", "memory limit exceeded ({memory} MiB): the code used more memory than "
                                            "the limit over all its processes and the kernel was stopped"),
}


class KernelSession:
    """The kernel of one submission, started in ``workdir`` under the sandbox chosen by ``options.sandbox``."""

    def __init__(self, workdir: Path, options: Options, log: Callable[[str], None] = lambda s: None):
        self.workdir = Path(workdir)
        self.options = options
        self.log = log
        self.km = None
        self.kc = None
        self.generation = 0
        self.restarts = 0
        self.sandbox_mode = "none"
        self.degraded = True
        self.student_seconds = 0.0   # time spent running code in the kernel (student cells and calls)
        self.startup_seconds = 0.0   # time spent waiting for kernels to become ready
        self._launched = None        # (km, kc, monotonic start) of a kernel launched but not yet waited on
        self.limits = options.limits or Limits()

    # -- life cycle ---------------------------------------------------------------------------------------------
    def launch(self) -> None:
        """Start the kernel process without waiting for it: it boots while the caller does other work.

        :meth:`start` (or the first :meth:`ready`) waits for it. A warm grading worker launches the next
        submission's kernel this way before it finishes the current one.
        """
        if self._launched is not None or self.km is not None:
            return
        self.generation += 1
        km = make_kernel_manager(self.workdir, self.options.sandbox, self.limits)
        km.log = KERNEL_LOG  # the sandbox status is said once per run by the caller, not once per kernel
        env = kernel_env(self.workdir, self.options.execution)
        if self.options.blas_threads:  # kernels graded side by side must not each take every core
            env.update({name: str(self.options.blas_threads) for name in BLAS_THREAD_VARIABLES})
        km.start_kernel(cwd=str(self.workdir), env=env,
                        extra_arguments=["--HistoryManager.hist_file=:memory:"])
        kc = km.client()
        kc.start_channels()
        self._launched = (km, kc, time.monotonic())

    def ready(self) -> None:
        """Wait for the launched kernel and install the grading bridge (launching it first if needed)."""
        if self.km is not None:
            return
        self.launch()
        km, kc, launched = self._launched
        self._launched = None
        waited = time.monotonic()
        try:
            kc.wait_for_ready(timeout=max(0.1, self.options.startup_timeout - (waited - launched)))
        except RuntimeError as err:
            kc.stop_channels()
            self._kill(km)
            raise KernelUnavailable(f"the grading kernel did not start: {err}") from err
        finally:
            self.startup_seconds += time.monotonic() - waited
        self.km, self.kc = km, kc
        self.sandbox_mode = getattr(km, "sandbox_mode", "none")
        self.degraded = bool(getattr(km, "degraded", self.sandbox_mode != "bwrap"))
        self.install_bridge()

    def start(self) -> None:
        self.launch()
        self.ready()

    def install_bridge(self) -> None:
        result = self.run(wire.KERNEL_SOURCE, self.options.startup_timeout, silent=True)
        if result.status != "ok":
            raise KernelUnavailable(f"could not set up the grading bridge in the kernel ({result.status})")

    @property
    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def _kill(self, km) -> None:
        """SIGKILL the kernel and everything it started, then release what the sandbox held (uid, IPC dir)."""
        try:
            km.kill_hard()
        except Exception as err:  # the process may already be gone; record, never raise from cleanup
            self.log(f"killing the kernel: {type(err).__name__}: {err}")
        try:
            km.shutdown_kernel(now=True)
        except Exception as err:  # already dead and cleaned up
            self.log(f"cleaning up the kernel: {type(err).__name__}: {err}")

    def kill(self) -> None:
        """Stop the kernel at once (SIGKILL to its whole process group)."""
        if self._launched is not None:
            km, kc, _ = self._launched
            self._launched = None
            kc.stop_channels()
            self._kill(km)
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            self._kill(self.km)
        self.km = self.kc = None

    def shutdown(self) -> None:
        self.kill()

    def restart(self) -> None:
        """A fresh kernel (the old one is dead or killed); handles of the old one become invalid."""
        if self.restarts >= self.options.max_restarts:
            raise KernelUnavailable(f"the kernel died {self.restarts + 1} times; the limit is "
                                    f"{self.options.max_restarts} restarts per notebook")
        self.kill()
        self.restarts += 1
        self.start()

    # -- running code --------------------------------------------------------------------------------------------
    def run(self, code: str, timeout: float, *, silent: bool = False,
            stdin: Callable[[str], str] | None = None) -> RunResult:
        """Run ``code``; kill the kernel if it outlives ``timeout``, dies, or prints past the kill limit.

        With ``stdin``, the code may call ``input(prompt)``: each request is answered with ``stdin(prompt)``
        (the bridge's substituted names ask the grader for their values this way).
        """
        if not self.alive:
            return RunResult("died")
        kc = self.kc
        started = time.monotonic()
        deadline = started + max(timeout, 0.1)
        msg_id = kc.execute(code, silent=silent, store_history=not silent, allow_stdin=stdin is not None,
                            stop_on_error=False)
        result = RunResult("ok")
        state = {"kept": 0, "received": 0}
        got_reply = got_idle = False
        last_alive_check = started
        # Wait on every channel at once: a message on any of them (output, the reply, an input request) is
        # handled as soon as it arrives.
        poller = zmq.Poller()
        sockets = {kc.iopub_channel.socket: "iopub", kc.shell_channel.socket: "shell"}
        if stdin is not None:
            sockets[kc.stdin_channel.socket] = "stdin"
        for sock in sockets:
            poller.register(sock, zmq.POLLIN)
        while not (got_reply and got_idle):
            now = time.monotonic()
            if now > deadline:
                self.kill()
                result.status = "timeout"
                break
            if now - last_alive_check > 0.5:
                last_alive_check = now
                if self._memory_exceeded() or not self.km.is_alive():
                    result.status = "memory_limit" if self._memory_exceeded() else "died"
                    self.kill()
                    break
            ready = {sockets[sock] for sock, _ in poller.poll(timeout=max(1, min(250, int((deadline - now) * 1000))))}
            if not ready:
                continue
            if "stdin" in ready:
                request = self._next(kc.get_stdin_msg)
                if request is not None and request["msg_type"] == "input_request":
                    kc.input(stdin(str(request["content"].get("prompt", ""))))
            if "shell" in ready:
                reply = self._next(kc.get_shell_msg)
                if reply is not None and reply["parent_header"].get("msg_id") == msg_id:
                    got_reply = True
                    if reply["content"].get("status") == "error":
                        result.status = "error"
            if "iopub" in ready:
                while (msg := self._next(kc.get_iopub_msg)) is not None:
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    if msg["msg_type"] == "status":
                        got_idle = got_idle or msg["content"].get("execution_state") == "idle"
                        continue
                    if not self._take_output(msg, result, state, silent):
                        break
                if result.status == "output_limit":
                    break
        if result.status in ("ok", "error") and self._memory_exceeded():
            result.status = "memory_limit"      # a child was killed by the memory limit: the kernel goes too
            self.kill()
        result.seconds = time.monotonic() - started
        self.student_seconds += result.seconds
        return result

    def _memory_exceeded(self) -> bool:
        """Did the kernel's memory limit (its cgroup's OOM killer) stop one of its processes?"""
        return self.km is not None and bool(getattr(self.km, "memory_exceeded", lambda: False)())

    @staticmethod
    def _next(get) -> dict | None:
        try:
            return get(timeout=0)
        except queue.Empty:
            return None

    def _take_output(self, msg: dict, result: RunResult, state: dict, silent: bool) -> bool:
        """Record one iopub message of the running code; False when the kernel was killed for its output."""
        opts = self.options
        kind, content = msg["msg_type"], msg["content"]
        if kind == "execute_input":
            return True
        if kind == "clear_output":
            result.outputs.clear()
            return True
        if kind == "display_data" and wire.MIME in content.get("data", {}):
            result.payloads.append(content["data"][wire.MIME])
            return True
        size = len(json.dumps(content.get("data", content.get("text", ""))))
        state["received"] += size
        if state["received"] > opts.kill_output_bytes:
            self.kill()
            result.status = "output_limit"
            return False
        if kind == "stream" and len(result.printed) < opts.max_printed_in_call:
            result.printed += content["text"][: opts.max_printed_in_call - len(result.printed)]
        if kind == "error":
            result.status = "error"
        if kind in ("stream", "display_data", "execute_result", "error") and not silent:
            if state["kept"] + size > opts.max_output_bytes:
                if state["kept"] <= opts.max_output_bytes:
                    result.outputs.append(nbformat.v4.new_output(
                        "stream", name="stdout",
                        text=f"\n[output truncated: more than {opts.max_output_bytes} bytes]\n"))
                    state["kept"] = opts.max_output_bytes + 1
                return True
            state["kept"] += size
            output = nbformat.v4.output_from_msg(msg)
            if (kind == "stream" and result.outputs and result.outputs[-1].output_type == "stream"
                    and result.outputs[-1].name == output.name):
                result.outputs[-1].text += output.text
            else:
                result.outputs.append(output)
        return True

    def fatal_output(self, result: RunResult, limit: float) -> NotebookNode:
        ename, template = FATAL_MESSAGES[result.status]
        return error_output(ename, template.format(limit=limit, kill=self.options.kill_output_bytes,
                                                   memory=self.limits.memory >> 20))

    # -- the bridge ----------------------------------------------------------------------------------------------
    MAX_CALLBACKS = 100_000

    def _callback_answerer(self, substitutes: dict[str, Callable]) -> Callable[[str], str]:
        """Answers the kernel's requests for a substituted name's value: runs the trusted function on plain data.

        The student's function runs in the kernel with, say, its ``im2col`` replaced by a stand-in; each call of
        the stand-in arrives here as an input request, is decoded like any value from the kernel, computed with
        the grader's own function (the reference) and sent back. Only the names the test chose are answered.
        """
        limit, generation = self.options.max_call_bytes, self.generation
        calls = [0]

        def answer(prompt: str) -> str:
            calls[0] += 1
            try:
                if calls[0] > self.MAX_CALLBACKS:
                    raise wire.WireError(f"more than {self.MAX_CALLBACKS} calls of substituted functions")
                request = wire.parse_callback(prompt, limit)
                name, args, kwargs = request
                if name not in substitutes:
                    raise wire.WireError(f"the test substitutes no function called {name!r}")
                args = wire.decode(args, limit, generation)
                kwargs = wire.decode(kwargs, limit, generation)
                if not isinstance(args, list) or not isinstance(kwargs, dict):
                    raise wire.WireError("malformed call of a substituted function")
                value = substitutes[name](*args, **kwargs)
                return json.dumps(["ok", wire.encode(value, limit, generation)])
            except Exception as err:  # sent back to the student's code, which sees it raised by the stand-in
                return json.dumps(["raise", type(err).__name__, str(err)[:wire.MAX_MESSAGE_CHARS]])
        return answer

    def request(self, request: dict, timeout: float,
                substitutes: dict[str, Callable] | None = None) -> tuple[Any, str]:
        """Send one bridge request; return (decoded value, text the student's code printed meanwhile).

        Raises the rebuilt student exception when the student's code raised, :class:`KernelDied`,
        :class:`StudentCodeTimeout`, :class:`OutputLimitExceeded`, or :class:`wire.WireError`.
        """
        if not self.alive:
            raise KernelDied("the student's kernel is not running (it died earlier in this cell)")
        code = f"__workbook_bridge__({json.dumps(json.dumps(request))})"
        limit = max(0.1, min(timeout, self.options.call_timeout))
        stdin = self._callback_answerer(substitutes) if substitutes else None
        result = self.run(code, limit, silent=True, stdin=stdin)
        if result.status == "timeout":
            raise StudentCodeTimeout(f"the call ran longer than {limit:g} s; the student's kernel was stopped")
        if result.status == "died":
            raise KernelDied("the student's kernel died during the call (a crash, os._exit, or out of memory)")
        if result.status == "memory_limit":
            raise MemoryLimitExceeded(f"memory limit exceeded ({self.limits.memory >> 20} MiB) during the call; "
                                      f"the student's kernel was stopped")
        if result.status == "output_limit":
            raise OutputLimitExceeded(f"the call printed more than {self.options.kill_output_bytes} bytes; "
                                      f"the student's kernel was stopped")
        if len(result.payloads) != 1:
            raise wire.WireError(f"expected one reply from the kernel, got {len(result.payloads)} "
                                 f"(was the grading bridge replaced?)")
        reply = wire.parse_reply(result.payloads[0], self.options.max_call_bytes)
        if reply[0] == "raise":
            raise wire.rebuild_exception(reply[1] if len(reply) > 1 else "Exception",
                                         reply[2] if len(reply) > 2 else "", reply[3] if len(reply) > 3 else "")
        if len(reply) != 2:
            raise wire.WireError("the kernel's reply has an unknown form")
        return wire.decode(reply[1], self.options.max_call_bytes, self.generation), result.printed
