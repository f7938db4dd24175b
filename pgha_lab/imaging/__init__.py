"""Node images: the base image, the host-side wheelhouse, the builds and their progress."""
