"""`pgha-lab export ansible`: an Ansible project that builds this lab's cluster on bare Ubuntu 24.04
hosts (a bare lab's nodes over the docker connection, or real VMs over SSH), and `run_playbook`, which
runs one or more of its steps against a bare lab. Every file the playbook installs is what render/,
render/systemd.py, tls.py and secrets.py produce: the project copies them, it renders no config."""
from pgha_lab.deploy.run import PlaybookResult, run_playbook

__all__ = ["PlaybookResult", "run_playbook"]
