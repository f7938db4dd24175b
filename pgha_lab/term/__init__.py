"""Terminal output: progress lines and patronictl-style tables."""
