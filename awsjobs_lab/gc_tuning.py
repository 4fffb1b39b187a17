"""The garbage collector in the server process: its pauses kept out of the event loop's way.

Python's cyclic collector holds the GIL while it walks the objects of the generations it
collects, so no thread runs, the event loop's included. A server holds hundreds of thousands
of objects that live as long as it does and are never garbage: modules, classes and
configuration at the start, botocore's service models and client classes once AWS is used.
Left in the collected generations, they make every older collection walk them all.
"""

from __future__ import annotations

import gc

# Python's own thresholds, and ours: a young collection every 4,000 new container objects
# rather than 700, and an older one every 10 of those, as before.
PYTHON_GC_THRESHOLDS = (700, 10, 10)
SERVER_GC_THRESHOLDS = (4_000, 10, 10)

_server_tuned = False  # set in the server's process only: a CLI is left as Python set it


def tune_garbage_collection() -> None:
    """Keep the collector's pauses out of the event loop's way, once per process.

    - Freeze what the started server holds (modules, classes, configuration: some 300,000
      objects that live as long as it does): a full collection, which a burst of job starts
      triggers, would otherwise walk them all and hold the loop (and every thread) about
      200 ms. Garbage is collected first, so only live objects are frozen.
    - Collect less often: a burst of requests allocates fast, and Python's default (a young
      collection every 700 objects, an older one every 7,000) then stops every thread many
      times a second, and brings the full collections that walk every unfrozen object. Not
      too rarely either: a young collection walks every object made since the last one. In
      the `loop` benchmark (200 job starts, 50 followed logs) the longest young collection of
      a pass took 8 to 23 ms at 10,000, and 3.5 to 7 ms at 4,000. Only Python's defaults
      are changed: thresholds that someone set (another extension, the deployment) are
      theirs.
    """
    global _server_tuned
    _server_tuned = True
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
    if gc.get_threshold() == PYTHON_GC_THRESHOLDS:
        gc.set_threshold(*SERVER_GC_THRESHOLDS)


def freeze_long_lived() -> None:
    """In the server, take every object tracked now out of all later collections: called
    right after objects were made that live as long as the process (an AWS client: botocore's
    parsed data files, service model and client class, some 55,000 objects for EC2; left in,
    each older collection walked them, 10 to 50 ms under load).

    Nothing is collected first: that is a pause of its own. The price is bounded: a cycle
    among objects frozen here is never collected, and this runs a handful of times in a
    server's life (once per AWS client)."""
    if _server_tuned:
        gc.freeze()
