"""Lessons on the live lab: one file a lesson, the catalogue, progress, and the baseline reset."""
