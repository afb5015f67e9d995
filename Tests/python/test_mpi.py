"""Data-parallel training under MPI against one process.

`mpirun -np 2 cytogan train ...` splits every batch of 32 over two processes; one process with the
same options is the reference. Weights are compared per network as the relative Frobenius
difference ||a - b|| / ||a|| over all of the network's tensors (weights and BatchNorm statistics).
Per tensor, max|a - b| / max|a| is printed too, but it is not asserted: the biases that feed a
training-mode BatchNorm have a gradient that is zero but for float rounding, and Adam's first
steps (update about lr x g / (|g| + 1e-8)) turn that rounding into values of size 1e-6..1e-5
whose sign is arbitrary, so their per-tensor difference is of order 1 even between two single
processes that differ only in their thread count.

After 1 step the bar is 1e-5. After 20 steps a bar of 1e-3 would lie below the float
rounding floor of this recipe: one process run with --threads 1 and with --threads 2 (nothing but
the order of a few float sums differs) ends 2.7e-3 (generator) and 1.2e-3 (discriminator) apart,
because the early Adam steps amplify rounding. The 20-step bar is therefore 2e-2, an order of
magnitude above that floor and two below what a wrong slice of data, labels or noise gives
(differences of order 1e-1 to 1).

Both runs use OpenBLAS's generic x86-64 kernel (OPENBLAS_CORETYPE=Prescott) where it exists: its
rounding of each product does not depend on the other dimensions of the matrix, so splitting the
batch changes nothing but the order of the sums the ranks exchange. The CPU's own AVX-512 or AVX2
kernels block a GEMM differently for 16 and 32 items, and at step 1 that rounding (1e-7) is
amplified a thousandfold in the generator's gradient (most likely because, at initialization, the discriminator's
gradient is nearly the same for every generated cell and the generator's BatchNorm backward
subtracts its batch mean, leaving a small residual of large terms). Two correct kernels in ONE
process (Prescott against SkylakeX) then differ by as much (3.6e-4) as one process and two ranks.
`test_native_kernels_agree_where_rounding_cannot_flip` checks the CPU's own kernels where that
amplification does not reach: the discriminator after one step, and the losses.

Skipped with a message when mpirun or libmpi is not installed (`make setup` installs Open MPI).
"""
import contextlib
import ctypes
import json
import os
import platform
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import BIN

MPIRUN = shutil.which("mpirun")


def _libmpi():
    for name in (os.environ.get("CYTOGAN_LIBMPI"), "libmpi.so.40", "libmpi.so.12"):
        if not name:
            continue
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            pass
    return None


pytestmark = pytest.mark.skipif(
    MPIRUN is None or _libmpi() is None,
    reason="MPI checks skipped: mpirun or libmpi (libmpi.so.40 / libmpi.so.12) not found; "
           "install Open MPI (apt-get install openmpi-bin libopenmpi-dev, or `make setup`)")


def mpirun_command(n):
    """mpirun -np N with Open MPI's flags for a small machine (more ranks than cores) and root."""
    cmd = [MPIRUN, "-np", str(n)]
    version = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe"]
        if os.geteuid() == 0:
            cmd += ["--allow-run-as-root"]
    return cmd


def train_args(manifest, out, steps, *extra):
    return ["train", "--manifest", str(manifest), "--preset", "small-64", "--batch-size", "32", "--steps", str(steps),
            "--seed", "1", "--threads", "1", "--progress", "none", "--checkpoint-dir", str(out), *map(str, extra)]


# OpenBLAS's generic x86-64 kernel, pinned for the comparisons (None: not an x86-64 machine).
GENERIC_KERNEL = "Prescott" if platform.machine() in ("x86_64", "AMD64") else None


def run(cmd, timeout=600, kernel=None):
    """Runs cmd; `kernel` pins OpenBLAS's kernel (None: GENERIC_KERNEL, "": the CPU's own)."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if kernel is None:
        kernel = GENERIC_KERNEL
    if kernel:
        env["OPENBLAS_CORETYPE"] = kernel
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}"
    return p


def checkpoint(folder, step):
    return pathlib.Path(folder) / f"checkpoint-{step:09d}.safetensors"


def differences(a_path, b_path):
    """Per network: (relative Frobenius difference, worst per-tensor max-relative difference, its tensor)."""
    a, b = load_file(str(a_path)), load_file(str(b_path))
    assert set(a) == set(b)
    out = {}
    for net in ("generator", "discriminator"):
        keys = [k for k in a if k.startswith(net + ".")]
        num = sum(float(((a[k].astype(np.float64) - b[k].astype(np.float64)) ** 2).sum()) for k in keys)
        den = sum(float((a[k].astype(np.float64) ** 2).sum()) for k in keys)

        def rel(k):
            x, y = a[k].astype(np.float64), b[k].astype(np.float64)
            return float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-30))

        worst = max(keys, key=rel)
        weights = [k for k in keys if k.endswith(".weight")]
        worst_weight = max(weights, key=rel)
        out[net] = (float(np.sqrt(num / den)), rel(worst), worst, rel(worst_weight), worst_weight)
    return out


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpi")
    run([BIN, "synth", "--out", str(d / "synth"), "--threads", "2"])
    return d


@pytest.fixture(scope="module")
def runs(screen):
    """20 steps in one process and in two (a checkpoint after every step)."""
    manifest = screen / "synth" / "crops.csv"
    single = run([BIN, *train_args(manifest, screen / "single", 20, "--checkpoint-every", "1", "--keep", "20")])
    multi = run([*mpirun_command(2), BIN, *train_args(manifest, screen / "mpi", 20, "--checkpoint-every", "1", "--keep", "20")])
    if GENERIC_KERNEL:
        assert f"BLAS kernels {GENERIC_KERNEL}" in multi.stderr, multi.stderr[-2000:]
    return screen, manifest, json.loads(single.stdout), multi


def rank0_summary(process):
    """The run summary of a multi-process run: one JSON line, printed by rank 0 alone."""
    lines = [l for l in process.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"only rank 0 prints the summary, got:\n{process.stdout}"
    return json.loads(lines[0])


def test_two_processes_match_one(runs):
    screen, _, single, multi = runs
    summary = rank0_summary(multi)
    assert summary["processes"] == 2 and summary["step"] == 20
    for key in ("discriminator_loss", "generator_loss"):
        assert abs(summary[key] - single[key]) <= 1e-3 * abs(single[key]), (key, summary[key], single[key])
    # Adam's first update is lr * g / (|g| + eps): a gradient smaller than the rounding of its own
    # sum moves its weight by a whole step in either direction. The generator has many such
    # gradients (through two networks and BatchNorm), so two correct computations of the same step
    # (one process or two; Winograd's or the direct arithmetic) differ in a few hundred to a
    # thousand of its 1.1 million first updates (measured: 261 and 1,143, relative Frobenius
    # 2.3e-4 and 6.2e-4). The bars sit well above that and far below what a wrong reduction gives
    # (unsynchronized BatchNorm or an unreduced gradient changes most updates).
    bars = {1: {"generator": 5e-3, "discriminator": 1e-5}, 20: {"generator": 2e-2, "discriminator": 2e-2}}
    for step, bar in bars.items():
        d = differences(checkpoint(screen / "single", step), checkpoint(screen / "mpi", step))
        for net, (frob, worst, name, worst_w, name_w) in d.items():
            print(f"after {step} step(s), {net}: relative Frobenius {frob:.3g}; "
                  f"largest per-tensor max|a-b|/max|a| {worst:.3g} ({name}), of the .weight tensors {worst_w:.3g} ({name_w})",
                  file=sys.stderr)
            assert frob <= bar[net], f"{net} after {step} step(s): {frob:.3g} > {bar[net]}"
    # After one step at most 1% of the generator's updates differ by more than a quarter of a step
    # (small-64's generator rate is 4e-4).
    a, b = load_file(str(checkpoint(screen / "single", 1))), load_file(str(checkpoint(screen / "mpi", 1)))
    keys = [k for k in a if k.startswith("generator.")]
    moved = sum(int((np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)) > 1e-4).sum()) for k in keys)
    total = sum(a[k].size for k in keys)
    print(f"after 1 step, generator: {moved} of {total} updates differ by more than 1e-4", file=sys.stderr)
    assert moved <= 0.01 * total, f"{moved} of {total} generator updates differ"


def test_checkpoint_resumes_with_one_or_two_processes(runs):
    """One more step from the 2-process checkpoint, in one process and in two: the same update."""
    screen, manifest, _, _ = runs
    start = checkpoint(screen / "mpi", 20)
    one = json.loads(run([BIN, "train", "--manifest", str(manifest), "--resume", str(start), "--steps", "1", "--threads", "1",
                          "--progress", "none", "--checkpoint-dir", str(screen / "resume1")]).stdout)
    run([*mpirun_command(2), BIN, "train", "--manifest", str(manifest), "--resume", str(start), "--steps", "1",
         "--threads", "1", "--progress", "none", "--checkpoint-dir", str(screen / "resume2")])
    assert one["step"] == 21 and one["position"] == 21 * 32
    for net, (frob, *_) in differences(checkpoint(screen / "resume1", 21), checkpoint(screen / "resume2", 21)).items():
        print(f"resumed 1 step, {net}: relative Frobenius {frob:.3g}", file=sys.stderr)
        assert frob <= 1e-5, net


def _ranks_of(pid):
    """PIDs of the cytogan processes started under `pid` (mpirun's children or grandchildren)."""
    found = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if cmd and cmd[0].endswith(b"cytogan") and b"train" in cmd and (ppid == pid or _parent(ppid) == pid):
            found.append(int(p.name))
    return sorted(found)


def _parent(pid):
    try:
        return int((pathlib.Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _wait_for(predicate, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def _two_process_run(manifest, out):
    """A 2-process training run of 1000 steps, yielded once its step-2 checkpoint exists; killed on the way out if still running."""
    job = subprocess.Popen([*mpirun_command(2), BIN, *train_args(manifest, out, 1000, "--checkpoint-every", "2")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: checkpoint(out, 2).exists(), 120), "no checkpoint within 2 minutes"
        yield job
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


def test_killed_process_ends_the_job_and_the_last_checkpoint_resumes(screen):
    manifest = screen / "synth" / "crops.csv"
    out = screen / "killed"
    with _two_process_run(manifest, out) as job:
        ranks = _ranks_of(job.pid)
        assert len(ranks) == 2, f"expected 2 cytogan processes under mpirun, found {ranks}"
        killed = time.time()
        os.kill(ranks[-1], signal.SIGKILL)
        _, err = job.communicate(timeout=60)
        took = time.time() - killed
    print(f"job ended {took:.1f} s after SIGKILL of one process (rc {job.returncode}); stderr tail: {err.strip()[-300:]}",
          file=sys.stderr)
    assert job.returncode != 0 and took < 60
    assert "signal 9" in err or "Killed" in err or "error" in err, err[-2000:]
    # The newest checkpoint is whole and resumes in one process.
    newest = sorted(out.glob("checkpoint-*.safetensors"))[-1]
    step = int(newest.stem.split("-")[1])
    resumed = json.loads(run([BIN, "train", "--manifest", str(manifest), "--resume", str(out), "--steps", "1",
                              "--threads", "1", "--progress", "none", "--checkpoint-dir", str(screen / "after-kill")]).stdout)
    assert resumed["step"] == step + 1


def test_usr1_checkpoints_and_every_process_stops_at_the_same_step(screen):
    """mpirun passes SIGUSR1 to every process (a scheduler's warning signal): rank 0 checkpoints, all stop."""
    manifest = screen / "synth" / "crops.csv"
    out = screen / "usr1"
    with _two_process_run(manifest, out) as job:
        job.send_signal(signal.SIGUSR1)
        stdout, err = job.communicate(timeout=60)
    assert job.returncode == 0, err[-2000:]
    summary = json.loads(stdout)
    assert summary["stop_reason"] == "requested"
    assert checkpoint(out, summary["step"]).exists()


def test_native_kernels_agree_where_rounding_cannot_flip(screen):
    """The CPU's own GEMM kernels: after one step the discriminator (no BatchNorm amplification)
    within 1e-5, and after 20 steps the two losses within 2e-2 of one process's."""
    manifest = screen / "synth" / "crops.csv"
    single = json.loads(run([BIN, *train_args(manifest, screen / "native1", 20, "--checkpoint-every", "1", "--keep", "20")],
                            kernel="").stdout)
    multi = run([*mpirun_command(2), BIN, *train_args(manifest, screen / "native2", 20, "--checkpoint-every", "1", "--keep", "20")],
                kernel="")
    summary = rank0_summary(multi)
    d = differences(checkpoint(screen / "native1", 1), checkpoint(screen / "native2", 1))
    print(f"native kernels, after 1 step: generator {d['generator'][0]:.3g}, discriminator {d['discriminator'][0]:.3g}",
          file=sys.stderr)
    assert d["discriminator"][0] <= 1e-5
    for key in ("discriminator_loss", "generator_loss"):
        assert abs(summary[key] - single[key]) <= 2e-2 * abs(single[key]), (key, summary[key], single[key])
