"""pgha-lab: a highly available PostgreSQL lab on Docker, to break on purpose and measure."""
__version__ = "0.1.0"
