"""Batch transcription: a folder or a bucket of recordings, optionally sharded over Cloud Run Job tasks.

A second entry point (`python -m whisper_api.batch`) over the same decode → engine → formats path
that the HTTP routes use. `storage` reads and writes local folders and `gs://` prefixes, `worker`
plans and runs one task's share, `manifest` records what each input became.
"""

INTERRUPTED = 130  # the exit status of an interrupted run, as a shell reports a process stopped by Ctrl-C
