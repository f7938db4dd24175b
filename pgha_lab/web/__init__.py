"""The dashboard: a local web page over a running lab (`pgha-lab dashboard`). It reads the lab
through the same probes and acts through the same chaos, role-change and drill code as the CLI."""
