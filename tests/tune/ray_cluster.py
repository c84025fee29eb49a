"""A two-node Ray cluster on this machine, started and stopped by the tests themselves.

Each node is one ``ray start --block`` process in a session of its own: every process of the node (GCS, raylet,
agents, workers) descends from it, so a node is killed (SIGKILL, a node crash) through its own process tree alone
-- never by ``ray stop``, which would reach other users' clusters on this machine. The cluster gets its own temp
dir and free ports, no dashboard, a small object store and few CPUs; every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
START_TIMEOUT_S = 90.0
OBJECT_STORE_BYTES = 80 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="jgray", dir="/tmp")  # short: Ray's socket paths are limited
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}
        # a loaded machine: give a raylet time to register (Ray's default, 10 s, is too short under load)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
                    "RAY_raylet_start_wait_time_s": "120"}

    def _ports(self) -> list[str]:
        return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]

    def start_node(self, name: str, num_cpus: int, resources: str | None = None, attempt: int = 0) -> None:
        head = not self.nodes
        args = [RAY, "start", "--block", f"--num-cpus={num_cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                "--disable-usage-stats", "--node-ip-address=127.0.0.1", *self._ports()]
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.temp_dir}",
                     f"--dashboard-port={free_port()}",
                     f"--ray-client-server-port={free_port()}"]
        else:
            args += [f"--address={self.address}"]
        if resources:
            args.append(f"--resources={resources}")
        log = open(os.path.join(self.temp_dir, f"{name}.log"), "w")
        self.nodes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        if head and not self._gcs_listening(self.nodes[name]):
            # its GCS never listened: a port taken between free_port() and the bind, on a loaded machine. Up to
            # twice more on fresh ports, else the error with the node's log (``ray.init`` would wait for it for minutes)
            self.kill_node(name)
            self.kill_strays()
            if attempt >= 2:
                raise RuntimeError(f"ray head node's GCS did not listen on {self.address}: {self.log(name)}")
            self.port = free_port()
            self.address = f"127.0.0.1:{self.port}"
            return self.start_node(name, num_cpus, resources, attempt + 1)
        self.wait_nodes(len(self.nodes))

    def _gcs_listening(self, proc: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> bool:
        """Until the head's GCS port accepts connections (True), or its node process exits or ``timeout`` passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return True
            except OSError:
                time.sleep(0.25)
        return False

    def alive_nodes(self) -> list[dict]:
        import ray

        return [n for n in ray.nodes() if n.get("Alive")]

    def wait_nodes(self, count: int, timeout: float = START_TIMEOUT_S) -> None:
        """Until ``count`` nodes are alive (connecting this process to the cluster on the first call)."""
        import ray

        end = time.monotonic() + timeout
        while True:
            for name, proc in self.nodes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"ray node {name} exited ({proc.returncode}): {self.log(name)}")
            try:
                if not ray.is_initialized():
                    ray.init(address=self.address, include_dashboard=False, configure_logging=False,
                             log_to_driver=False)
                if len(self.alive_nodes()) == count:
                    return
            except ConnectionError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"the local Ray cluster did not reach {count} nodes in {timeout:.0f} s: "
                                   f"{[self.log(n) for n in self.nodes]}")
            time.sleep(0.25)

    def log(self, name: str) -> str:
        with open(os.path.join(self.temp_dir, f"{name}.log")) as f:
            return f.read()[-2000:]

    def kill_node(self, name: str) -> None:
        """SIGKILL every process of the node (a crash)."""
        import psutil

        proc = self.nodes.pop(name)
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)  # workers and agents start sessions of their own
        except psutil.NoSuchProcess:
            tree = []
        for p in [psutil.Process(proc.pid), *tree] if proc.poll() is None else tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def kill_strays(self) -> None:
        """SIGKILL any process of this cluster that outlived its node's process (found by this cluster's temp dir
        in its command line; a node that failed to start leaves its raylet behind)."""
        import psutil

        for p in psutil.process_iter(["pid", "cmdline", "uids"]):
            try:
                if p.info["uids"] and p.info["uids"].real == os.getuid() and p.pid != os.getpid() and \
                        any(self.temp_dir in arg for arg in p.info["cmdline"] or []):
                    p.send_signal(signal.SIGKILL)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    def stop(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for name in reversed(list(self.nodes)):  # a throw-away cluster: no graceful stop needed
            self.kill_node(name)
        self.kill_strays()
        subprocess.run(["rm", "-rf", self.temp_dir], check=False, timeout=60)
