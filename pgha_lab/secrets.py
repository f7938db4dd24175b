"""The lab's passwords: made once per lab, kept only in paths.secrets_file (0600).

The file holds the environment variables Patroni reads natively; compose hands it to the db
nodes with env_file, so no password is ever in compose.yaml, an image, a rendered config or a
tracked file. Host-side tools read it back through `load`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from secrets import token_urlsafe  # the standard library's (absolute import)

from pgha_lab.errors import LabError
from pgha_lab.fsutil import write_if_changed
from pgha_lab.paths import LabPaths

# The PostgreSQL role names: the rendered patroni.yml names them too, from these constants.
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewind_user"
RESTAPI_USER = "patroni"

FILE_MODE = 0o600
_PASSWORD_BYTES = 24   # 32 URL-safe characters: no quoting needed in an env file or a conninfo
_LINE_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class Secrets:
    superuser_password: str
    replication_password: str
    rewind_password: str
    restapi_password: str
    superuser: str = SUPERUSER
    replication_user: str = REPLICATION_USER
    rewind_user: str = REWIND_USER
    restapi_user: str = RESTAPI_USER

    @classmethod
    def generate(cls) -> Secrets:
        return cls(*(token_urlsafe(_PASSWORD_BYTES) for _ in range(4)))

    def env(self) -> dict[str, str]:
        """The variables as Patroni reads them (they override the config file's usernames)."""
        return {
            "PATRONI_SUPERUSER_USERNAME": self.superuser,
            "PATRONI_SUPERUSER_PASSWORD": self.superuser_password,
            "PATRONI_REPLICATION_USERNAME": self.replication_user,
            "PATRONI_REPLICATION_PASSWORD": self.replication_password,
            "PATRONI_REWIND_USERNAME": self.rewind_user,
            "PATRONI_REWIND_PASSWORD": self.rewind_password,
            "PATRONI_RESTAPI_USERNAME": self.restapi_user,
            "PATRONI_RESTAPI_PASSWORD": self.restapi_password,
        }

    def passwords(self) -> list[str]:
        """Every secret value, e.g. for tests that prove none of them leaked."""
        return [self.superuser_password, self.replication_password, self.rewind_password, self.restapi_password]

    def render(self) -> str:
        head = "# pgha-lab: this lab's passwords, read by Patroni from the environment (compose's env_file; on a\n" \
               "# host the exported playbook built, patroni.service's EnvironmentFile).\n" \
               "# Keep it private (0600). Deleting it means new passwords: the lab must then be recreated.\n"
        return head + "".join(f"{k}={v}\n" for k, v in self.env().items())

    @classmethod
    def parse(cls, text: str, source: str) -> Secrets:
        env: dict[str, str] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _LINE_RE.match(line)
            if not m:
                raise LabError(f"{source} has a line that is not NAME=value; delete "
                               "the file and recreate the lab to get new passwords.")
            env[m.group(1)] = m.group(2)
        try:
            got = cls(superuser_password=env["PATRONI_SUPERUSER_PASSWORD"],
                      replication_password=env["PATRONI_REPLICATION_PASSWORD"],
                      rewind_password=env["PATRONI_REWIND_PASSWORD"],
                      restapi_password=env["PATRONI_RESTAPI_PASSWORD"],
                      superuser=env["PATRONI_SUPERUSER_USERNAME"],
                      replication_user=env["PATRONI_REPLICATION_USERNAME"],
                      rewind_user=env["PATRONI_REWIND_USERNAME"],
                      restapi_user=env["PATRONI_RESTAPI_USERNAME"])
        except KeyError as exc:
            raise LabError(f"{source} lacks {exc.args[0]}; "
                           "delete the file and recreate the lab to get new passwords.") from None
        if not all(got.passwords()):
            raise LabError(f"{source} has an empty password; delete the "
                           "file and recreate the lab to get new passwords.")
        return got


def load(paths: LabPaths) -> Secrets:
    """The lab's passwords, for host-side tools (psql, probes); LabError when the lab has none yet."""
    try:
        text = paths.secrets_file.read_text()
    except FileNotFoundError:
        raise LabError(f"the lab {paths.project} has no secrets yet ({paths.secrets_file}); "
                       "run `pgha-lab up` first.") from None
    return Secrets.parse(text, str(paths.secrets_file))


def ensure(paths: LabPaths) -> Secrets:
    """Load the lab's passwords, making them the first time; never changes an existing file's content."""
    if paths.secrets_file.exists():
        found = load(paths)
        if (paths.secrets_file.stat().st_mode & 0o777) != FILE_MODE:
            os.chmod(paths.secrets_file, FILE_MODE)   # someone loosened it; passwords stay private
        return found
    made = Secrets.generate()
    write_if_changed(paths.secrets_file, made.render(), FILE_MODE)
    return made
