"""Where frames come from: video files, image folders, live streams, the camera registry and health."""
