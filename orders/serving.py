"""gunicorn's settings for both services, wherever they run: the image, the local cloud, benchmarks.

Load it with ``gunicorn --config python:orders.serving``; command-line options
still win. gunicorn imports it once, in its master process, before any worker:

- ``GUNICORN_WORKERS`` processes (default 2) of ``GUNICORN_THREADS`` threads
  (default 16): the requests wait on Firestore and HTTP most of the time, and
  two processes use two cores for the rest.
- Each process holds at most its threads plus :data:`KEEPALIVE_SPARE` idle
  keep-alive connections. gunicorn's default (1000) lets the first process to
  wake accept every connection a pooling client opens (the Cloud Run front
  end, a dispatcher): they are kept alive, so the other processes stay idle
  and one core does all the work. Capped, the rest go to the other processes.
- ``timeout`` 300 s is above the tasks' dispatch deadline (60 s) and the
  fanout's attempt deadline (180 s), so gunicorn never kills a request Cloud
  Tasks or Cloud Scheduler is still waiting for.
"""

from __future__ import annotations

import os

from orders.settings import env_int

KEEPALIVE_SPARE = 4  # idle keep-alive connections a process holds besides one per thread

workers = env_int(os.environ, "GUNICORN_WORKERS", 2)
threads = env_int(os.environ, "GUNICORN_THREADS", 16)
worker_connections = threads + KEEPALIVE_SPARE
timeout = 300  # seconds
graceful_timeout = 20  # seconds a stopping worker may finish its requests
