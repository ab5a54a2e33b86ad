"""The edge store's tables (`edge.storage.store.TrackletStore`): one list of statements per schema version,
applied in order by `persist.sqlite` (a version's list is never edited once released; a change is a new one)."""

from __future__ import annotations

STORE_MIGRATIONS: list[list[str]] = [
    [  # 1
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE cameras (id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL, "
        "added REAL NOT NULL)",
        "CREATE TABLE tracklets (id TEXT PRIMARY KEY, camera TEXT NOT NULL REFERENCES cameras (id), "
        "track_id INTEGER NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL, "
        "closed INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL)",
        "CREATE INDEX tracklets_by_end ON tracklets (end_s, id)",
        "CREATE INDEX tracklets_by_camera ON tracklets (camera, end_s)",
        "CREATE TABLE crops (tracklet TEXT NOT NULL REFERENCES tracklets (id) ON DELETE CASCADE, "
        "rank INTEGER NOT NULL, path TEXT NOT NULL UNIQUE, bytes INTEGER NOT NULL, "
        "PRIMARY KEY (tracklet, rank))",
        "CREATE TABLE vectors (tracklet TEXT NOT NULL REFERENCES tracklets (id) ON DELETE CASCADE, "
        "fingerprint TEXT NOT NULL, dim INTEGER NOT NULL, dtype TEXT NOT NULL, data BLOB NOT NULL, "
        "stored REAL NOT NULL, PRIMARY KEY (tracklet, fingerprint))",
        "CREATE INDEX vectors_by_fingerprint ON vectors (fingerprint, stored)",
        "CREATE TABLE sightings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "tracklet TEXT NOT NULL REFERENCES tracklets (id) ON DELETE CASCADE, identity TEXT NOT NULL, "
        "distance REAL NOT NULL, time REAL NOT NULL, source TEXT NOT NULL)",
        "CREATE INDEX sightings_by_tracklet ON sightings (tracklet)",
        "CREATE INDEX sightings_by_identity ON sightings (identity, time)",
    ],
    [  # 2 (issue 15): the attribute profile's JSON; NULL for tracklets stored before attributes were read
        "ALTER TABLE tracklets ADD COLUMN attributes TEXT",
    ],
]
