"""The independent history checker: judges a client history and final reads, knowing nothing of the lab."""
