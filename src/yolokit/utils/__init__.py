"""Small helpers shared by every layer: atomic file writes, run directories, rank awareness, progress bars."""
