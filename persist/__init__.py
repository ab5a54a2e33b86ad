"""Persistence shared by the edge and the hub: SQLite connections and migrations, durable file writes.

Imports only the standard library and `models` (for its errors), never `edge`, `cloud` or `crossview`.
"""
