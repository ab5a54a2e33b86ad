"""The edge's local store: tracklets, vectors and sightings in SQLite, best crops as JPEG files."""
