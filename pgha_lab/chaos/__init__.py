"""The fault catalogue (actions) and what the cluster should do about each fault (expectations)."""
