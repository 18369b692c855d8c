"""The job platform: how any actor runs, whatever its domain.

Declaring actors (``base``), the job context, the jobs and fan-out APIs, the recorder, dead
letters, metrics, queue depths, errors, outage logging, the actor modules' loader, the
middleware and the Redis broker with its assembly. Nothing here imports a domain actor
module (the import contracts in ``pyproject.toml`` check it).
"""
