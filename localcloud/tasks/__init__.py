"""A Cloud Tasks v2 emulator served over gRPC, for the official google-cloud-tasks client.

Import :class:`localcloud.tasks.server.TasksEmulator` to embed it; run
``localcloud tasks-emulator`` (:mod:`localcloud.tasks.command`) to serve it.
"""
