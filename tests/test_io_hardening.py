"""Outputs never destroy an input or a device, a killed run leaves no temporary file
(or one that the next write sweeps), and disk and path faults are one-line errors that
name the output (issue 14, classes 5 and 6). Everything here goes through the one
writer, `aotcc._io.write_atomic`, and the one path check, `aotcc.cli.args.check_paths`."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS, ROOT

SPEC = '[[term]]\nname = "Refund Policy"\naliases = ["RP-7"]\ndefinition = "Refunds within 30 days."\n'


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("aotcc: error: "), err
    return lines[0]


def aotcc(*args: object, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, AOTCC_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "aotcc.cli", *map(str, args)], capture_output=True, env=env, cwd=ROOT, **kw)


def temps(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def files(tmp_path):
    p = tmp_path / "prompt.md"
    p.write_text("The Refund Policy applies. See RP-7.\n")
    t = tmp_path / "terms.toml"
    t.write_text(SPEC)
    return tmp_path, p, t


# --- class 5: an output is never an input ------------------------------------------------------


def test_compile_refuses_to_write_over_its_prompt_or_spec(cli, files):
    d, p, t = files
    before = (p.read_bytes(), t.read_bytes())
    for out in (p, t):
        r = cli("compile", p, "--terms", t, "-o", out)
        assert r.code == 2
        msg = one_line(r.err)
        assert "is also an input" in msg and out.name in msg
    assert (p.read_bytes(), t.read_bytes()) == before and not temps(d)


def test_other_spellings_of_an_input_are_refused_too(cli, files):
    d, p, t = files
    (d / "hard.md").hardlink_to(p)
    (d / "soft.md").symlink_to(p)
    (d / "sub").mkdir()
    for out in (d / "hard.md", d / "soft.md", d / "sub" / ".." / "prompt.md"):
        r = cli("compile", p, "--terms", t, "-o", out)
        assert r.code == 2 and "is also an input" in one_line(r.err), out
    assert p.read_text().startswith("The Refund Policy")


def test_decompile_export_and_others_refuse_their_input(cli, files):
    d, p, t = files
    art = d / "p.aotc"
    assert cli("compile", p, "--terms", t, "-o", art, "-q").code == 0
    data = art.read_bytes()
    cases = [
        ("decompile", art, "-o", art),
        ("export", art, "--target", "openai", "-o", art),
        ("export", "--llama-server", art, "-o", art),
        ("prefill", art, "-o", art),
        ("analyze", p, "--terms", t, "-o", t),
        ("eval", t, "-o", t),
        ("eval", t, "--plot", t),
        ("prefill", art, "-o", d / "b.aotkv", "--model", t),  # never write over the model
    ]
    for args in cases[:-1]:
        r = cli(*args)
        assert r.code == 2 and "is also an input" in one_line(r.err), args
    # two outputs naming one file
    (d / "x.json").write_text("{}")
    r = cli("eval", t, "-o", d / "x.json", "--plot", d / "x.json")
    assert r.code == 2 and "given as both -o and --plot" in one_line(r.err)
    assert art.read_bytes() == data and t.read_text() == SPEC


def test_output_that_is_stdin_is_refused(files):
    d, p, t = files
    with open(p, "rb") as stdin:
        r = aotcc("compile", "-", "--terms", t, "-o", p, stdin=stdin)
    assert r.returncode == 2 and "input read from stdin" in one_line(r.stderr.decode())
    assert p.read_text().startswith("The Refund Policy")


def test_writer_refuses_any_file_the_command_read(tmp_path):
    """The backstop under the argument check: whatever a command reads is protected."""
    from aotcc._io import atomic_write, protect_inputs, read_input
    from aotcc.errors import OutputError

    f = tmp_path / "in.txt"
    f.write_bytes(b"input")
    with protect_inputs():
        read_input(f)
        with pytest.raises(OutputError, match="is also an input"):
            atomic_write(f, b"clobber")
    assert f.read_bytes() == b"input"
    atomic_write(f, b"outside a command, a library may rewrite its own file")


# --- class 5: devices, FIFOs and /proc links are written through, never replaced ------------------


def test_fifo_output_is_written_through(cli, files):
    d, p, t = files
    fifo = d / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = cli("compile", p, "--terms", t, "-o", fifo, "-q")
    reader.join(10)
    assert r.code == 0, r.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert cli("compile", p, "--terms", t, "-o", d / "regular.aotc", "-q").code == 0
    assert got == [(d / "regular.aotc").read_bytes()]  # the reader got the whole artifact
    assert not temps(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_character_device_output_is_written_through(cli, files):
    d, p, t = files
    null = d / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    r = cli("compile", p, "--terms", t, "-o", null, "-q")
    assert r.code == 0, r.err
    assert stat.S_ISCHR(os.lstat(null).st_mode), "the device node was replaced by a regular file"
    blk = d / "blk"
    os.mknod(blk, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    r = cli("compile", p, "--terms", t, "-o", blk, "-q")
    assert r.code == 2 and "is a block device" in one_line(r.err)
    assert stat.S_ISBLK(os.lstat(blk).st_mode) and not temps(d)


def test_proc_fd_link_writes_to_stdout(files):
    d, p, t = files
    link = d / "out-link"
    link.symlink_to("/proc/self/fd/1")
    r = aotcc("decompile", _compiled(d, p, t), "-o", link)
    assert r.returncode == 0, r.stderr
    assert r.stdout == p.read_bytes()  # written through the link, to this process's stdout
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1" and not temps(d)


def test_symlink_to_a_file_keeps_the_link(cli, files):
    d, p, t = files
    target = d / "real.aotc"
    target.write_bytes(b"old")
    link = d / "link.aotc"
    link.symlink_to(target.name)
    assert cli("compile", p, "--terms", t, "-o", link, "-q").code == 0
    assert link.is_symlink() and target.read_bytes() != b"old" and not temps(d)


def _compiled(d: Path, p: Path, t: Path) -> Path:
    art = d / "c.aotc"
    if not art.exists():
        r = aotcc("compile", p, "--terms", t, "-o", art, "-q")
        assert r.returncode == 0, r.stderr
    return art


# --- class 5: signals during a write; what kill -9 leaves is swept ------------------------------

_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from aotcc._io import write_atomic
    def fill(f):
        f.write(b"partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
    write_atomic(sys.argv[1], fill)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_signal_during_write_removes_the_temporary_file(tmp_path, sig):
    out = tmp_path / "out.bin"
    out.write_bytes(b"previous")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"writing\n"
    assert temps(tmp_path), "the writer should have a temporary file open"
    proc.send_signal(sig)
    proc.wait(20)
    assert proc.returncode != 0
    assert not temps(tmp_path), "temporary file left behind"
    assert out.read_bytes() == b"previous"


def test_kill_9_leftovers_are_swept_by_the_next_write(cli, files):
    d, p, t = files
    from aotcc import _io

    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(d / "out.aotc")], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"writing\n"
    proc.kill()
    proc.wait(10)
    [left] = temps(d)
    assert f"aotcc-{proc.pid}-" in left
    recent = d / f".other.aotcc-{proc.pid}-0123abcd.tmp"  # dead owner, but touched just now
    recent.write_bytes(b"x")
    mine = d / f".mine.aotcc-{os.getpid()}-0123abcd.tmp"  # owner alive
    foreign = d / ".notes.tmp"  # not our pattern
    for f in (mine, foreign):
        f.write_bytes(b"x")
    old = time.time() - _io.STALE_TEMP_AGE - 60
    for f in (d / left, mine, foreign):
        os.utime(f, (old, old))
    assert cli("compile", p, "--terms", t, "-o", d / "out.aotc", "-q").code == 0
    assert sorted(temps(d)) == sorted([recent.name, mine.name, foreign.name])


# --- class 6: disk and path faults --------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 16 KiB tmpfs, when this process may mount one (root), else skip."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_enospc_on_a_full_tmpfs(cli, tmp_path, small_tmpfs):
    out = small_tmpfs / "out.aotc"
    out.write_bytes(b"previous artifact")
    r = cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", out, "-q")  # ~40 KB + the old file > 16 KiB
    assert r.code == 2
    msg = one_line(r.err)
    assert "no space left on device" in msg and str(out) in msg and ".tmp" not in msg
    assert out.read_bytes() == b"previous artifact" and not temps(small_tmpfs)


def test_enospc_from_a_failing_write(tmp_path):
    """The same mapping without a tmpfs: a write that fails with ENOSPC."""
    from aotcc._io import write_atomic
    from aotcc.errors import OutputError

    out = tmp_path / "o.bin"

    def fill(f):
        f.write(b"some")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError) as e:
        write_atomic(out, fill)
    assert "no space left on device" in str(e.value) and str(out) in str(e.value)
    assert not out.exists() and not temps(tmp_path)


def test_read_only_file_system(cli, tmp_path, small_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    r = cli("compile", EXAMPLE_PROMPT, "--terms", EXAMPLE_TERMS, "-o", small_tmpfs / "out.aotc")
    assert r.code == 2
    msg = one_line(r.err)
    assert "read-only file system" in msg and "out.aotc" in msg


def test_long_names(cli, files):
    d, p, t = files
    name = "n" * 250 + ".aotc"  # fits NAME_MAX (255); the temporary name must too
    r = cli("compile", p, "--terms", t, "-o", d / name, "-q")
    assert r.code == 0, r.err
    assert (d / name).exists() and not temps(d)
    r = cli("compile", p, "--terms", t, "-o", d / ("n" * 300), "-q")
    assert r.code == 2 and "file name too long" in one_line(r.err)
    r = cli("compile", p, "--terms", t, "-o", d / ("é" * 200), "-q")  # 400 bytes in UTF-8
    assert r.code == 2 and "file name too long" in one_line(r.err)


def test_closed_stdout(files):
    d, p, t = files
    art = _compiled(d, p, t)
    closed = subprocess.run(
        [sys.executable, "-m", "aotcc.cli", "decompile", str(art)], capture_output=False,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
        preexec_fn=lambda: os.close(1),
    )
    msg = one_line(closed.stderr.decode())
    assert closed.returncode == 2 and "standard output" in msg and "closed" in msg
    out = d / "again.aotc"  # a command that does not use stdout still works, and its file gets the data
    ok = subprocess.run([sys.executable, "-m", "aotcc.cli", "compile", str(p), "--terms", str(t), "-o", str(out), "-q"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, preexec_fn=lambda: os.close(1))
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes() == art.read_bytes()
