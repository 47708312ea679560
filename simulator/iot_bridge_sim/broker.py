"""A real mosquitto broker on 127.0.0.1 for the demo, the tests and the benchmarks."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

try:  # Under pytest-socket, sockets are blocked; the broker helper needs the real ones.
    from pytest_socket import _true_socket as _socket  # type: ignore[import-untyped]
except ImportError:  # outside the test plugin
    _socket = socket.socket

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with _socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with _socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return bool(sock.connect_ex(("127.0.0.1", port)) == 0)


class Broker:
    """mosquitto on one fixed port, which can be stopped and started again."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        nodelay: bool = True,
        port: int | None = None,
        tls: bool = False,
        extra_config: list[str] | None = None,
        acl: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._dir = Path(tempfile.mkdtemp(prefix="iot-bridge-mosquitto-"))
        # Started as root, mosquitto drops to its own user: it must be able to read here.
        self._dir.chmod(0o755)
        self._process: subprocess.Popen[bytes] | None = None
        # With tls, clients must trust ca_file (a CA made for this broker alone).
        self.ca_file: Path | None = self._make_certificates() if tls else None
        extra = list(extra_config or [])
        if acl is not None:
            acl_file = self._dir / "acl"
            acl_file.write_text(acl)
            acl_file.chmod(0o644)
            extra.append(f"acl_file {acl_file}")
        self.config = self._write_config(users or {}, nodelay, extra)

    @property
    def directory(self) -> Path:
        """The broker's own temporary directory (for extra files such as an ACL file)."""
        return self._dir

    def _write_config(self, users: dict[str, str], nodelay: bool, extra: list[str]) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr", "log_type error"]
        if nodelay:
            lines.append("set_tcp_nodelay true")
        if self.ca_file is not None:
            lines += [
                f"cafile {self.ca_file}",
                f"certfile {self._dir / 'server.crt'}",
                f"keyfile {self._dir / 'server.key'}",
            ]
        if users:
            password_file = self._dir / "passwords"
            password_file.touch()
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(password_file), user, password], check=True
                )
            password_file.chmod(0o644)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        lines += extra  # e.g. an acl_file line
        config = self._dir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _make_certificates(self) -> Path:
        """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self._dir)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=IoT Bridge test CA",
            # Python 3.13 verifies strictly: a CA must declare what its key may sign.
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        )
        (self._dir / "san.ext").write_text(
            "subjectAltName=IP:127.0.0.1\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "authorityKeyIdentifier=keyid\n"
        )
        openssl(
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        )
        for name in ("ca.crt", "server.crt", "server.key"):
            (self._dir / name).chmod(0o644)
        return self._dir / "ca.crt"

    def set_password(self, user: str, password: str) -> None:
        """Change a user's password; takes effect at the next start()."""
        subprocess.run(
            ["mosquitto_passwd", "-b", str(self._dir / "passwords"), user, password], check=True
        )

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not listen on {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker (clients see the connection drop)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """End the broker at once (SIGKILL), frozen or not: the kernel closes every
        connection, so clients see it drop."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """Stop and remove the temporary files."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
