"""Test hosts on one machine: Linux network namespaces on a bridge of their own.

Each host has its own network stack and address; a worker host's processes also run in a
mount namespace of their own, where ``PRIVATE`` (their ``var/`` and temp folder) is the
host's own folder (``Host.files``), bound there: every host sees its own files at the same
path and no other host's, so what crosses between hosts crosses the network. ``Host.cut``
takes a host's link down (a host lost to the others) and ``Host.restore`` brings it back.
Needs root and ``iproute2`` (``make test`` installs it).
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["PRIVATE", "Host", "Network"]

# Every worker host's private folder: the same path on each, a different tmpfs behind it.
PRIVATE = Path("/tmp/pfd-hosts")


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, text=True, timeout=30)


class Host:
    """One namespace on the network: ``address``, and the prefixes that run commands on it."""

    def __init__(self, network: Network, name: str, number: int) -> None:
        self.name, self.address = name, f"{network.prefix}.{number}"
        self.files = Path(tempfile.mkdtemp(prefix=f"pfd-host-{name}-"))
        self.namespace = f"pfd-{network.tag}-{name}"
        self.link = f"pv{network.tag}{number}"  # the host's cable, as the bridge's side sees it
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.link, "type", "veth", "peer", "name", f"{self.link}p")
        _ip("link", "set", f"{self.link}p", "netns", self.namespace)
        _ip("link", "set", self.link, "master", network.bridge, "up")
        for command in (("link", "set", f"{self.link}p", "name", "eth0"),
                        ("addr", "add", f"{self.address}/24", "dev", "eth0"),
                        ("link", "set", "eth0", "up"), ("link", "set", "lo", "up")):
            _ip("netns", "exec", self.namespace, "ip", *command)

    @property
    def wrap(self) -> tuple[str, ...]:
        """The prefix that runs a command on this host's network (files shared)."""
        return ("ip", "netns", "exec", self.namespace)

    def private(self, command: str) -> str:
        """A shell command line that runs ``command`` on this host, ``PRIVATE`` its own files
        (``var/`` and ``tmp/`` in it)."""
        inner = (f"mount --bind {self.files} {PRIVATE} && mkdir -p {PRIVATE}/var {PRIVATE}/tmp && "
                 f"exec sh -c {shlex.quote(command)}")
        return f"{' '.join(self.wrap)} unshare --mount --propagation private sh -c {shlex.quote(inner)}"

    def cut(self) -> None:
        """Take the host's link down: nothing reaches it, it reaches nothing."""
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        """Bring the host's link back up."""
        _ip("link", "set", self.link, "up")

    def remove(self) -> None:
        """Delete the namespace (its end of the cable goes with it) and the host's files."""
        import shutil

        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.files, ignore_errors=True)


class Network:
    """A bridge with an address of its own (this machine's side: the test reaches every host),
    and the hosts plugged into it."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.prefix = f"10.231.{int(self.tag, 16) % 250 + 1}"
        self.bridge = f"pfdbr{self.tag}"
        self.hosts: list[Host] = []
        PRIVATE.mkdir(parents=True, exist_ok=True)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.prefix}.254/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def host(self, name: str) -> Host:
        """A new host on this network, numbered in the order made."""
        host = Host(self, name, len(self.hosts) + 1)
        self.hosts.append(host)
        return host

    def remove(self) -> None:
        """Delete every host and the bridge."""
        for host in self.hosts:
            host.remove()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30, check=False)
