"""The process's open-file limit: raised to the hard limit at hub start, and shared out.

A hub holds a file per edge stream, REST connection, store file and model; Linux's usual soft limit of
1,024 is reached by a thousand idle sockets (issue 12, finding 1), while the hard limit is often far
higher and any process may raise its soft limit up to it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 1000


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (logged when it changes); the (soft, hard) now.
    (-1, -1) where the platform has no such limit."""
    try:
        import resource
    except ImportError:  # Windows
        return -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        else:
            log.info("open-file limit raised from %d to %d", soft, target)
            soft = target
    return soft, hard


def default_max_connections(cap: int = MAX_CONNECTIONS) -> int:
    """A quarter of the soft open-file limit, at most `cap`, at least 8."""
    try:
        import resource
    except ImportError:
        return cap
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return cap
    return max(8, min(cap, soft // 4))
