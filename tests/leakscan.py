"""What a leaked secret looks like: the generated passwords and private keys of the labs in a
checkout, and any PEM private key at all. Used by the leak tests over tracked files and images."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pgha_lab import secrets
from pgha_lab.paths import LabPaths

# A PEM private key with its body: binaries that merely parse PEM carry the marker, never a body.
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/]{40}")


@dataclass
class Needles:
    """Exact strings that must appear nowhere but in the lab's own state folder."""
    passwords: set[str] = field(default_factory=set)
    key_lines: set[str] = field(default_factory=set)   # base64 body lines of private keys

    def all(self) -> list[str]:
        return sorted(self.passwords | self.key_lines)

    def add_lab(self, paths: LabPaths) -> None:
        if paths.secrets_file.is_file():
            self.passwords.update(secrets.load(paths).passwords())
        for key in [*paths.certs.glob("*.key"), *paths.nodes.glob("*/tls/*.key"), *paths.nodes.glob("*/tls/*.pem")]:
            in_key = False
            for line in key.read_text().splitlines():
                if "PRIVATE KEY-----" in line:
                    in_key = line.startswith("-----BEGIN")
                elif in_key and len(line) >= 40:
                    self.key_lines.add(line)


def labs_in(home: Path) -> list[LabPaths]:
    root = home / "labs"
    return [LabPaths(home=home, project=d.name) for d in sorted(root.iterdir()) if d.is_dir()] if root.is_dir() else []


def leaks_in(data: bytes, needles: Needles) -> list[str]:
    """Which needles (shortened, never printed whole) or PEM keys occur in `data`."""
    found = [f"{n[:4]}…" for n in needles.all() if n.encode() in data]
    if PEM_KEY.search(data):
        found.append("a PEM private key")
    return found
