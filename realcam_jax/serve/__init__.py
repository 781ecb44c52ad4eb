"""`realcam serve`: the local web page that steers the camera live (server.py, static/)."""
