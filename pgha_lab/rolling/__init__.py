"""Rolling changes on a running lab: what is stale, the safe order to apply it, and the rolling itself."""
