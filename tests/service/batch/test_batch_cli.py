"""`python -m whisper_api.batch` as a user runs it, on inputs that are out to break it: entries that
are not readable files, names that are not UTF-8 or too long, OUT inside IN, Ctrl-C in every state,
and `make batch`. The real CLI in a process of its own, the real model, a real GCS API server."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.engines import FIXTURES
from tests.support.gcs import FlakyProxy, fake_gcs_server, upload_fixtures
from whisper_api.batch.manifest import FileRecord, read_records
from whisper_api.batch.names import NAME_MAX, TEMPORARY_OVERHEAD

REPO = Path(__file__).resolve().parents[3]
# A liveness bound for "stops within a second" (on a loaded, shared machine): the code before this
# change never stopped at all in these states.
STOPPED_WITHIN_S = 10


class Cli:
    """The CLI in a process of its own, its output collected line by line as it comes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> None:
        environment = {
            **os.environ,
            "WHISPER_MODEL": "tiny.en",
            "WHISPER_DEVICE": "cpu",
            "WHISPER_LOG_JSON": "false",
            "PYTHONPATH": f"{REPO / 'service'}:{REPO}",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "whisper_api.batch", *args, "--no-progress"],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="backslashreplace",
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process.poll() is None and time.monotonic() < deadline, self.output
            time.sleep(0.02)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def interrupt(self, signals: int = 1) -> tuple[int, float]:
        """Ctrl-C (`signals` times, 0.1 s apart): the exit code and how long the process took to stop."""
        started = time.monotonic()
        for index in range(signals):
            if index:
                time.sleep(0.1)
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.finish(timeout=STOPPED_WITHIN_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.finish()
            pytest.fail(f"still running {STOPPED_WITHIN_S} s after Ctrl-C:\n{self.output}")
        return code, time.monotonic() - started


def run_cli(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    cli = Cli(*args, env=env, prefix=prefix)
    return cli.finish(), cli.output


def without_root_privileges() -> tuple[str, ...]:
    """A command prefix under which permissions apply: root reads whatever it likes, unless it
    runs without the capabilities to override them."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): unreadable files cannot be made")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


def local_manifest(output: Path) -> list[FileRecord]:
    return [
        record
        for part in sorted(output.glob("_manifest/runs/*/*.jsonl"))
        for record in read_records(part.read_text())
    ]


def summary_line(output: str) -> str:
    return next(line for line in output.splitlines() if " recording(s): " in line)


# --- entries that are not readable files -------------------------------------------------------


def hostile_folder(root: Path) -> dict[bytes, str]:
    """Every kind of entry that is not a readable file, beside three good recordings (two of them
    under names that are not UTF-8, one in a folder so named): raw relative name → the reason the
    manifest must give."""
    root.mkdir()
    shutil.copy(FIXTURES / "short.wav", root / "good.wav")
    os.makedirs(os.fsencode(root) + b"/dossier-\xff")
    shutil.copy(FIXTURES / "short.mp3", os.fsencode(root) + b"/dossier-\xff/r\xe9union.mp3")
    shutil.copy(FIXTURES / "short.flac", os.fsencode(root) + b"/caf\xe9.flac")
    (root / "gone.wav").symlink_to(root / "missing.wav")
    (root / "loop.wav").symlink_to(root / "loop.wav")
    (root / "a").mkdir()
    (root / "a" / "b").symlink_to(root / "a")  # a folder cycle
    (root / "ping.wav").symlink_to(root / "pong.wav")
    (root / "pong.wav").symlink_to(root / "ping.wav")
    os.mkfifo(root / "pipe.wav")
    (root / "null.wav").symlink_to("/dev/null")
    (root / "locked.wav").write_bytes((FIXTURES / "short.wav").read_bytes())
    (root / "locked.wav").chmod(0)
    (root / "closed").mkdir()
    shutil.copy(FIXTURES / "short.wav", root / "closed" / "inside.wav")
    (root / "closed").chmod(0)
    return {
        b"gone.wav": "dangling_symlink",
        b"loop.wav": "symlink_loop",
        b"a/b": "symlink_to_folder",
        b"ping.wav": "symlink_loop",
        b"pong.wav": "symlink_loop",
        b"pipe.wav": "fifo",
        b"sock.wav": "socket",
        b"null.wav": "device",
        b"locked.wav": "unreadable",
        b"closed": "unreadable",
    }


def test_entries_that_are_not_readable_files_are_skipped_with_their_reason_and_the_rest_is_done(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    expected = hostile_folder(source)
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(source / "sock.wav"))
        code, output = run_cli(str(source), str(target), prefix=without_root_privileges())

    assert code == 0, output
    assert "Traceback" not in output
    assert f"{len(expected) + 3} recording(s): 3 done" in summary_line(output), output
    assert f"{len(expected)} skipped (not a readable file)" in summary_line(output)
    assert {"good.wav.verbose.json", "good.wav.srt"} <= {path.name for path in target.iterdir()}
    assert (target / "caf\\xe9.flac.srt").is_file()
    assert (target / "dossier-\\xff" / "r\\xe9union.mp3.srt").is_file()

    records = {
        base64.b64decode(record.path_bytes) if record.path_bytes else record.path.encode(): record
        for record in local_manifest(target)
    }
    transcribed = {b"good.wav", b"caf\xe9.flac", b"dossier-\xff/r\xe9union.mp3"}
    assert set(records) == {*expected, *transcribed}
    assert {records[raw].status for raw in transcribed} == {"done"}
    for raw, reason in expected.items():
        record = records[raw]
        assert (record.status, record.reason) == ("skipped", reason), raw
        assert record.error and record.error in output  # the summary says why, too
    latin1 = records[b"caf\xe9.flac"]
    assert (latin1.path, latin1.path_bytes) == ("caf\\xe9.flac", base64.b64encode(b"caf\xe9.flac").decode())
    assert records[b"good.wav"].path_bytes is None


def test_opening_a_fifo_never_blocks(tmp_path: Path) -> None:
    """A FIFO put where a listed recording was: refused at once, before reading a byte."""
    from whisper_api.batch.storage import LocalFolder, NotAFile, StoredFile

    os.mkfifo(tmp_path / "late.wav")
    outcome: list[BaseException | None] = []

    def open_it() -> None:
        try:
            with LocalFolder(tmp_path).open(StoredFile("late.wav", 1, "1")):
                outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    opener = threading.Thread(target=open_it, daemon=True)
    opener.start()
    opener.join(timeout=20)
    if opener.is_alive():  # blocked waiting for a writer: give it one so the thread ends
        os.close(os.open(tmp_path / "late.wav", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO blocked")
    assert isinstance(outcome[0], NotAFile)


# --- names that are not UTF-8 ------------------------------------------------------------------


def names_under(folder: Path) -> set[bytes]:
    """Every file's relative name under `folder`, as the file system has it."""
    root = os.fsencode(folder)
    return {
        os.path.relpath(os.path.join(parent, name), root)
        for parent, _, files in os.walk(root)
        for name in files
    }


def test_a_name_that_is_not_utf8_is_transcribed_under_its_escaped_name_and_a_rerun_skips_it(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    raw_source = os.fsencode(source)
    source.mkdir()
    shutil.copy(FIXTURES / "short.wav", source / "good.wav")
    shutil.copy(FIXTURES / "short.wav", raw_source + b"/caf\xe9.wav")
    os.mkdir(raw_source + b"/dossier-\xff")
    shutil.copy(FIXTURES / "short.mp3", raw_source + b"/dossier-\xff/r\xe9union.mp3")
    with open(raw_source + b"/bad\xe9.mp3", "wb") as bad:
        bad.write(b"ID3 but nothing else")
    # Printing or logging the raw name would raise here (strict UTF-8, the logs as JSON).
    env = {"PYTHONIOENCODING": "utf-8:strict", "WHISPER_LOG_JSON": "true"}

    code, output = run_cli(str(source), str(target), env=env)

    assert code == 1, output  # bad\xe9.mp3 is not audio
    assert "Traceback" not in output and "Logging error" not in output, output
    assert "4 recording(s): 3 done, 0 skipped (already done), 1 failed" in summary_line(output)
    assert "failed: bad\\xe9.mp3: " in output  # the summary shows the name as the manifest does
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(entry["message"].startswith("failed: bad\\xe9.mp3: ") for entry in logged), output
    written = names_under(target)
    for name in written:
        name.decode("utf-8")  # everything written is named in UTF-8
    assert {
        b"caf\\xe9.wav.verbose.json",
        b"caf\\xe9.wav.srt",
        b"dossier-\\xff/r\\xe9union.mp3.verbose.json",
        b"dossier-\\xff/r\\xe9union.mp3.srt",
    } <= written
    version = os.stat(raw_source + b"/caf\xe9.wav").st_mtime_ns
    assert (target / "_manifest" / "done" / f"caf\\xe9.wav@{version}.json").is_file()
    # The very bytes were read: the same audio as good.wav, the same transcript.
    assert (target / "caf\\xe9.wav.verbose.json").read_text() == (
        target / "good.wav.verbose.json"
    ).read_text()
    assert json.loads((target / "dossier-\\xff" / "r\\xe9union.mp3.verbose.json").read_text())["text"]

    records = {record.path: record for record in local_manifest(target)}
    latin1 = records["caf\\xe9.wav"]
    assert (latin1.status, latin1.path_bytes, latin1.outputs) == (
        "done",
        base64.b64encode(b"caf\xe9.wav").decode(),
        ["caf\\xe9.wav.verbose.json", "caf\\xe9.wav.srt"],
    )
    folder = records["dossier-\\xff/r\\xe9union.mp3"]
    assert (folder.status, base64.b64decode(folder.path_bytes or "")) == (
        "done",
        b"dossier-\xff/r\xe9union.mp3",
    )
    assert (records["bad\\xe9.mp3"].status, records["good.wav"].path_bytes) == ("failed", None)
    marker = FileRecord.model_validate_json(
        (target / "_manifest" / "done" / f"caf\\xe9.wav@{version}.json").read_text()
    )
    assert (marker.path, marker.name_bytes) == ("caf\\xe9.wav", b"caf\xe9.wav")

    before = {name: os.stat(os.fsencode(target) + b"/" + name).st_mtime_ns for name in written}
    code, output = run_cli(str(source), str(target), "--run-id", "again", env=env)

    assert code == 1, output
    assert "4 recording(s): 0 done, 3 skipped (already done), 1 failed" in summary_line(output), output
    assert "loading faster-whisper" not in output  # nothing was redone
    after = {name: os.stat(os.fsencode(target) + b"/" + name).st_mtime_ns for name in written}
    assert after == before
    (part,) = (target / "_manifest" / "runs" / "again").glob("*.jsonl")
    again = {record.path: record for record in read_records(part.read_text())}
    assert (again["caf\\xe9.wav"].status, again["caf\\xe9.wav"].reason) == ("skipped", "already_done")
    assert again["caf\\xe9.wav"].path_bytes == latin1.path_bytes


# --- long names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [249, 255])
def test_a_name_of_the_longest_length_gets_outputs_that_fit_and_a_rerun_skips_it(
    tmp_path: Path, length: int
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".wav"  # two-byte characters too
    assert len(name.encode()) == length
    shutil.copy(FIXTURES / "short.wav", source / name)

    code, output = run_cli(str(source), str(target), "--formats", "verbose_json,srt,text")

    assert code == 0, output
    (record,) = local_manifest(target)
    assert (record.status, record.path) == ("done", name)
    assert len(record.outputs) == 3
    for output_path in record.outputs:
        stored = target / output_path
        assert stored.is_file()
        assert len(stored.name.encode()) + TEMPORARY_OVERHEAD <= NAME_MAX
        assert stored.name.startswith("é" * 10)  # recognisable: the name's beginning is kept
    assert json.loads((target / record.outputs[0]).read_text())["text"]

    code, output = run_cli(
        str(source), str(target), "--formats", "verbose_json,srt,text", "--run-id", "again"
    )
    assert code == 0, output
    assert "1 recording(s): 0 done, 1 skipped (already done), 0 failed" in summary_line(output)


# --- OUT inside IN ------------------------------------------------------------------------------


@pytest.mark.parametrize("inside", ["transcripts", ""])
def test_an_output_inside_the_input_is_not_counted_as_input(tmp_path: Path, inside: str) -> None:
    source = tmp_path / "in"
    (source / "calls").mkdir(parents=True)
    shutil.copy(FIXTURES / "short.wav", source / "calls" / "one.wav")
    shutil.copy(FIXTURES / "short.mp3", os.fsencode(source) + b"/calls/caf\xe9.mp3")  # outputs: caf\xe9.mp3.*
    (source / "notes.txt").write_text("a file of the user's: ignored")
    target = source / inside if inside else source

    first_code, first = run_cli(str(source), str(target))
    second_code, second = run_cli(str(source), str(target), "--run-id", "again")

    assert (first_code, second_code) == (0, 0), first + second
    assert "2 recording(s): 2 done" in summary_line(first)
    assert "1 file(s) ignored" in first
    assert "2 recording(s): 0 done, 2 skipped (already done), 0 failed" in summary_line(second)
    assert "1 file(s) ignored" in second, second  # the transcripts and manifests are not inputs


def test_an_output_prefix_inside_the_input_prefix_is_not_counted_as_input(
    gcs, make_bucket, gcs_server
) -> None:
    bucket = make_bucket("both")
    upload_fixtures(gcs, bucket, {"in/one.wav": "short.wav"})
    env = {"STORAGE_EMULATOR_HOST": gcs_server}

    first_code, first = run_cli(f"gs://{bucket}/in", f"gs://{bucket}/in/out", env=env)
    second_code, second = run_cli(f"gs://{bucket}/in", f"gs://{bucket}/in/out", "--run-id", "again", env=env)

    assert (first_code, second_code) == (0, 0), first + second
    assert "1 recording(s): 0 done, 1 skipped (already done), 0 failed" in summary_line(second)
    assert "ignored" not in second


# --- Ctrl-C in every state ----------------------------------------------------------------------


def write_long_recording(path: Path, copies: int) -> None:
    """`copies` times the 41 s meeting in one FLAC: minutes of speech to be busy with."""
    import av
    import numpy as np

    from whisper_api.audio import decode_audio

    clip = decode_audio((FIXTURES / "long.ogg").read_bytes(), 3600)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=16_000, layout="mono")
        for _ in range(copies):
            frame = av.AudioFrame.from_ndarray(
                np.asarray(clip, np.int16).reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = 16_000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def assert_interrupted(code: int, output: str) -> None:
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "interrupted: rerun the same command to resume" in output


def test_ctrl_c_while_transcribing_stops_at_once_even_twice_and_counts_what_was_not_reached(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    shutil.copy(FIXTURES / "short.wav", source / "a-first.wav")
    write_long_recording(source / "b-long.flac", copies=16)
    for index in range(3):
        shutil.copy(FIXTURES / "short.mp3", source / f"c-later-{index}.mp3")

    cli = Cli(str(source), str(target))
    cli.wait_for("loading faster-whisper")
    deadline = time.monotonic() + 120
    while not (
        target / "_manifest" / "done" / f"a-first.wav@{(source / 'a-first.wav').stat().st_mtime_ns}.json"
    ).exists():
        assert time.monotonic() < deadline and cli.process.poll() is None, cli.output
        time.sleep(0.02)
    time.sleep(1)  # into the 11-minute recording
    code, stopped_in = cli.interrupt(signals=2)

    assert_interrupted(code, cli.output)
    assert "5 recording(s): 1 done, 0 skipped (already done), 0 failed, 4 not reached" in summary_line(
        cli.output
    )
    print(f"stopped {stopped_in:.2f} s after Ctrl-C while transcribing")
    records = local_manifest(target)
    assert [(record.path, record.status) for record in records] == [("a-first.wav", "done")]


def test_ctrl_c_while_starting_stops_quietly(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(FIXTURES / "short.wav", tmp_path / "in" / "one.wav")
    cli = Cli(str(tmp_path / "in"), str(tmp_path / "out"))
    time.sleep(1)  # the imports take a second or more here; on a fast machine the run has begun
    code, _ = cli.interrupt()
    assert code == 130, cli.output
    assert "Traceback" not in cli.output and "KeyboardInterrupt" not in cli.output, cli.output


class StallingProxy(FlakyProxy):
    """Forwards to the storage server, but holds requests of one kind (listing, reading an object,
    uploading), from the `after`-th on, until released: storage that stops answering."""

    def __init__(self, kind: str, after: int = 0) -> None:
        super().__init__()
        self.kind, self.after = kind, after
        self.stalled = threading.Event()
        self.released = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a held request whose client has gone: nothing to tell

    def should_fail(self, kind: str) -> bool:
        if kind == self.kind:
            with self.lock:
                self.forwarded[kind] += 1
                stall = self.forwarded[kind] > self.after
            if stall:
                self.stalled.set()
                self.released.wait(60)
        return False


@pytest.fixture
def stalling_gcs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, int], StallingProxy]]:
    """`stalling_gcs(kind, after)` → a storage server of its own behind a StallingProxy, which
    this process's clients use too."""
    with ExitStack() as stack:

        def start(kind: str, after: int) -> StallingProxy:
            proxy = StallingProxy(kind, after)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            stack.callback(proxy.server_close)
            stack.callback(proxy.shutdown)
            stack.callback(proxy.released.set)  # last in, first out: let held requests go first
            server = stack.enter_context(fake_gcs_server(tmp_path / "server.log", external_url=proxy.url))
            proxy.upstream = server.removeprefix("http://")
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
            return proxy

        yield start


@pytest.mark.parametrize(
    ("kind", "after", "state"),
    [
        ("list", 0, "listing"),
        ("read", 0, "decoding, waiting on storage"),
        ("upload", 1, "writing"),  # the first upload is the manifest the run starts with
    ],
)
def test_ctrl_c_while_storage_does_not_answer_stops_at_once_and_a_rerun_resumes(
    stalling_gcs, kind: str, after: int, state: str
) -> None:
    from google.cloud import storage

    proxy = stalling_gcs(kind, after)
    env = {"STORAGE_EMULATOR_HOST": proxy.url}
    client = storage.Client()
    proxy.released.set()  # setting up goes through
    for name in ("stall-in", "stall-out"):
        client.create_bucket(name)
    upload_fixtures(client, "stall-in", {"one.wav": "short.wav", "two.mp3": "short.mp3"})
    proxy.released.clear()
    proxy.stalled.clear()
    proxy.forwarded.clear()

    cli = Cli("gs://stall-in", "gs://stall-out/out", env=env)
    assert proxy.stalled.wait(120), cli.output
    time.sleep(0.5)
    code, stopped_in = cli.interrupt()
    print(f"stopped {stopped_in:.2f} s after Ctrl-C while {state}")
    assert_interrupted(code, cli.output)
    if kind == "list":
        assert "interrupted before the inputs were listed" in cli.output
    else:
        counts = "2 recording(s): 0 done, 0 skipped (already done), 0 failed, 2 not reached"
        assert counts in summary_line(cli.output)

    proxy.released.set()
    code, output = run_cli("gs://stall-in", "gs://stall-out/out", "--run-id", "resumed", env=env)
    assert code == 0, output
    assert "2 recording(s): 2 done" in summary_line(output)


# --- make batch ---------------------------------------------------------------------------------


def make_batch(source: Path, target: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "make",
            "-s",
            "-o",
            ".venv/.service",
            "batch",
            f"IN={source}",
            f"OUT={target}",
            "ARGS=--no-progress",
        ],
        cwd=REPO,
        env={**os.environ, "WHISPER_MODEL": "tiny.en", "WHISPER_DEVICE": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def batch_process(source: Path) -> int:
    """The CLI's process id, found by its command line (the input folder is unique to the test)."""
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"whisper_api.batch" in command and os.fsencode(source) in command:
            return int(proc.name)
    raise LookupError(source)


def test_make_batch_reports_the_cli_exit_status(tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    shutil.copy(FIXTURES / "short.wav", source / "good.wav")
    (source / "bad.mp3").write_bytes(b"ID3 but nothing else")

    some_failed = make_batch(source, target)
    output = some_failed.communicate(timeout=300)[0]
    # GNU make exits 0, 1 (only with -q) or 2: a status of 1 cannot pass through it, so it is named.
    assert some_failed.returncode == 2, output
    assert "make batch: exit status 1: some recordings failed" in output

    for index in range(6):
        shutil.copy(FIXTURES / "short.mp3", source / f"more-{index}.mp3")
    interrupted = make_batch(source, target)
    deadline = time.monotonic() + 120
    while len(list(target.glob("_manifest/done/more-*"))) < 1:
        assert interrupted.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(batch_process(source), signal.SIGINT)  # as `kill -INT` or a job scheduler would
    output = interrupted.communicate(timeout=STOPPED_WITHIN_S)[0]
    # make dies of the same SIGINT, as it does on Ctrl-C at a terminal: a shell sees 130.
    assert interrupted.returncode == -signal.SIGINT, output
    assert "interrupted: rerun the same command to resume" in output
