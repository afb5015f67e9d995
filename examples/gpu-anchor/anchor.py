#!/usr/bin/env python3
"""The large-budget anchor: the cpu-64 recipe's networks trained in PyTorch on a GPU.

A measurement for comparison, not part of the product: what the same small-64 LSGAN, trained the
cpu-64 way, reaches with tens of thousands of steps instead of the ~3,000 a 2-core CPU gets in
20 minutes. It mirrors cytogan's networks and step (CytoGAN/DCGANArchitecture.swift, GANStep.swift,
DiffAugment.swift; GANConfig preset cpu-64) in plain PyTorch:

  G  z(100) -> Dense(8*8*128) -> BN -> LeakyReLU(0.2) -> 3 x [nearest x2 -> Conv5 'same' -> BN ->
     LeakyReLU] (64, 32, 16) -> Conv5 'same' (3) -> tanh; BN epsilon 1e-3, momentum 0.9
  D  Gaussian noise (std 0.1, training only) -> Conv5 strides 1,2,2,2 widths 16,32,64,128 with
     TensorFlow 'same' padding (stride 2: 1 before, 2 after) -> LeakyReLU(0.2) each ->
     Dense(100) -> Dense(1)
  init N(0, 0.02) weights, zero biases; Adam beta1 0.5, rates D 1.4e-4, G 4e-4 (the paper's
  doubled) with staircase decay 0.9999 every 100 steps; batch 32; real crops get a random
  mirror/quarter turn each; D sees [G(z); x] after DiffAugment translation (up to 1/8 of the side,
  fill -1) + cutout (half the side), targets [0; U(0.8, 1)], mean squared error; then G towards 1
  through the same augmentation; a moving average of D's weights (decay 0.999) after each step.
  Features ("pooled,pooled-std@dihedral", cpu-64's reading): the spatial mean of each LeakyReLU
  block's output of the averaged D, in inference mode, then the spatial (population) standard
  deviation of each, averaged over the crop's 8 mirrors and quarter turns (480 per crop; the first
  240 are "pooled@dihedral").

Input: an .npy.xz from prepare.sh (uint8 crops [N, 3, 64, 64] differenced along rows; the model
range [-1, 1] in 255 steps).
Output in --out: features-untrained.npy and features-step<K>.npy (float32 [N, 480], input row
order, 15 MB each) at the --at steps reached and at the end, samples.npy (64 generated cells,
float32 NCHW), log.txt (losses, steps/s). Training stops after --minutes of wall clock. With two
--at steps the results stay under 64 MiB, small enough to copy back from a remote GPU machine.

  python3 anchor.py --data crops64-p95.npy.xz --out OUT --minutes 7 --at 5000,20000 \
      [--init-from untrained.safetensors]
"""
import argparse, json, lzma, os, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoint  # beside this file

LATENT, SIZE, CH = 100, 64, 3
G_WIDTHS, D_WIDTHS, REP = [128, 64, 32, 16], [16, 32, 64, 128], 100
D_RATE, G_RATE, BATCH = 1.4e-4, 4e-4, 32


def same_pad(x, stride):
    """TensorFlow 'same' padding for a 5x5 kernel: 2|2 at stride 1, 1|2 at stride 2 (even sides)."""
    return F.pad(x, (2, 2, 2, 2) if stride == 1 else (1, 2, 1, 2))


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.s0 = SIZE // 8
        self.dense = nn.Linear(LATENT, self.s0 * self.s0 * G_WIDTHS[0])
        self.bn0 = nn.BatchNorm2d(G_WIDTHS[0], eps=1e-3, momentum=0.1)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 5) for a, b in zip(G_WIDTHS[:-1], G_WIDTHS[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm2d(b, eps=1e-3, momentum=0.1) for b in G_WIDTHS[1:])
        self.last = nn.Conv2d(G_WIDTHS[-1], CH, 5)

    def forward(self, z):
        h = F.leaky_relu(self.bn0(self.dense(z).view(-1, G_WIDTHS[0], self.s0, self.s0)), 0.2)
        for conv, bn in zip(self.convs, self.bns):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = F.leaky_relu(bn(conv(same_pad(h, 1))), 0.2)
        return torch.tanh(self.last(same_pad(h, 1)))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.strides = (1, 2, 2, 2)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, stride=s)
                                   for a, b, s in zip([CH] + D_WIDTHS[:-1], D_WIDTHS, self.strides))
        self.rep = nn.Linear(D_WIDTHS[-1] * (SIZE // 8) ** 2, REP)
        self.out = nn.Linear(REP, 1)

    def blocks(self, x):
        outs = []
        for conv, s in zip(self.convs, self.strides):
            x = F.leaky_relu(conv(same_pad(x, s)), 0.2)
            outs.append(x)
        return outs

    def forward(self, x):
        if self.training:
            x = x + 0.1 * torch.randn_like(x)
        return self.out(self.rep(self.blocks(x)[-1].flatten(1)))


def init_weights(m):
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(mod.weight, 0, 0.02)
            nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)


def load_cytogan(path, G, D):
    """Copies a cytogan checkpoint's generator and discriminator weights into G and D, so both
    frameworks start from the same numbers."""
    stored, _ = checkpoint.read(path)

    def tensor(name):
        dtype, shape, raw = stored[name]
        assert dtype == "F32", (name, dtype)
        return torch.from_numpy(np.frombuffer(raw, dtype="<f4").reshape(shape).copy())

    def load(net, prefix, names):
        """net's state from the checkpoint's tensors prefix.<cytogan layer>.<field> (the layer named
        by `names` from the PyTorch module path; BatchNorm's step counter has no counterpart)."""
        state = {}
        for key in net.state_dict():
            module, _, field = key.rpartition(".")
            if field != "num_batches_tracked":
                state[key] = tensor(f"{prefix}.{names[module]}.{field}")
        net.load_state_dict(state, strict=False)

    g = {"dense": "dense0", "bn0": "bn0", "last": f"conv{len(G_WIDTHS)}"}
    g.update({f"convs.{i}": f"conv{i + 1}" for i in range(len(G_WIDTHS) - 1)})
    g.update({f"bns.{i}": f"bn{i + 1}" for i in range(len(G_WIDTHS) - 1)})
    load(G, "generator", g)
    d = {f"convs.{i}": f"conv{i}" for i in range(len(D_WIDTHS))}
    load(D, "discriminator", dict(d, rep="representation", out="output"))


def dihedral(x, k):
    """The k-th of the square's 8 symmetries (k < 4: k quarter turns; k >= 4: mirrored first)."""
    if k >= 4:
        x = x.flip(3)
    return torch.rot90(x, k % 4, dims=(2, 3))


def random_dihedral(x):
    k = torch.randint(0, 8, (x.shape[0],), device=x.device)
    out = x
    for j in range(1, 8):
        out = torch.where((k == j)[:, None, None, None], dihedral(x, j), out)
    return out


def diff_augment(x, fill=-1.0):
    """Per image: an integer shift of up to 1/8 of the side (uncovered pixels = fill), then a cutout
    square of half the side whose top-left corner lies in [-side/4, side) (cytogan's DiffAugment)."""
    n, _, s, _ = x.shape
    t, h = int(0.125 * s + 0.5), int(0.5 * s + 0.5)
    dev = x.device
    dy = torch.randint(-t, t + 1, (n,), device=dev)
    dx = torch.randint(-t, t + 1, (n,), device=dev)
    xp = F.pad(x, (t, t, t, t), value=fill)
    ar = torch.arange(s, device=dev)
    iy = ar[None, :] + t - dy[:, None]
    ix = ar[None, :] + t - dx[:, None]
    bi = torch.arange(n, device=dev)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, iy[:, :, None], ix[:, None, :]].permute(0, 3, 1, 2)
    cy = torch.randint(0, s + 1 - h % 2, (n,), device=dev) - h // 2
    cx = torch.randint(0, s + 1 - h % 2, (n,), device=dev) - h // 2
    iny = (ar[None, :] >= cy[:, None]) & (ar[None, :] < cy[:, None] + h)
    inx = (ar[None, :] >= cx[:, None]) & (ar[None, :] < cx[:, None] + h)
    cut = (iny[:, :, None] & inx[:, None, :])[:, None]
    return torch.where(cut, torch.full_like(out, fill), out)


@torch.no_grad()
def features(D, x, batch=1024):
    """pooled,pooled-std@dihedral: each block's spatial means, then its spatial standard
    deviations, averaged over the 8 views."""
    D.eval()
    rows = []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        acc = None
        for k in range(8):
            stds, means = zip(*(torch.std_mean(b, dim=(2, 3), correction=0) for b in D.blocks(dihedral(xb, k))))
            f = torch.cat(means + stds, dim=1)
            acc = f if acc is None else acc + f
        rows.append((acc / 8).float().cpu())
    D.train()
    return torch.cat(rows).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--at", default="5000,20000", help="steps at which features are also written")
    ap.add_argument("--max-steps", type=int, default=10 ** 9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--init-from", help="start from a cytogan checkpoint's weights (e.g. one of 0 steps)")
    ap.add_argument("--spectral-norm", action="store_true",
                    help="a candidate not in cytogan: spectral normalization of D's weights (Miyato et al. 2018)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (0: its default)")
    ap.add_argument("--no-untrained", action="store_true", help="skip the untrained features")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "log.txt"), "a")

    def say(**kw):
        line = json.dumps(kw)
        print(line, flush=True)
        log.write(line + "\n"); log.flush()

    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cudnn.benchmark = True
    dev = torch.device(a.device)
    with lzma.open(a.data) as f:
        raw = np.cumsum(np.load(f), axis=3, dtype=np.uint8)  # undo prepare.sh's row differences
    x = torch.from_numpy(raw).to(dev).float().div_(127.5).sub_(1.0)
    n = x.shape[0]
    assert tuple(x.shape[1:]) == (CH, SIZE, SIZE), x.shape
    G, D = Generator().to(dev), Discriminator().to(dev)
    init_weights(G); init_weights(D)
    if a.init_from:
        load_cytogan(a.init_from, G, D)
    D_avg = Discriminator().to(dev)
    D_avg.load_state_dict(D.state_dict())
    if a.spectral_norm:
        from torch.nn.utils.parametrizations import spectral_norm
        for net in (D, D_avg):
            for mod in list(net.convs) + [net.rep, net.out]:
                spectral_norm(mod)
        D_avg.load_state_dict(D.state_dict())
    avg_params = list(D_avg.parameters())
    kw = dict(betas=(0.5, 0.999), eps=1e-8)
    if dev.type == "cuda":
        kw["fused"] = True
    optD = torch.optim.Adam(D.parameters(), lr=D_RATE, **kw)
    optG = torch.optim.Adam(G.parameters(), lr=G_RATE, **kw)
    say(event="start", device=str(torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"),
        torch=torch.__version__, crops=n, seed=a.seed, init_from=a.init_from, spectral_norm=a.spectral_norm)

    def save(tag, model):
        t = time.time()
        if a.spectral_norm and model is D_avg:
            # The average's own power-iteration vectors never ran: start from D's, refine on its weights.
            D_avg.load_state_dict({**D_avg.state_dict(), **{k: v for k, v in D.state_dict().items() if "_u" in k or "_v" in k}})
            with torch.no_grad():
                for _ in range(20):
                    D_avg(x[:2])
        f = features(model, x)
        np.save(os.path.join(a.out, f"features-{tag}.npy"), f.astype(np.float32))
        say(event="features", tag=tag, shape=list(f.shape), seconds=round(time.time() - t, 2))

    if not a.no_untrained:
        save("untrained", D_avg)
    at = sorted(int(s) for s in a.at.split(",") if s)
    b = BATCH
    perm, cursor = torch.randperm(n, device=dev), 0
    targets = torch.empty(2 * b, 1, device=dev)
    ones = torch.ones(b, 1, device=dev)
    start, step, saved = time.time(), 0, None
    deadline = start + 60 * a.minutes
    while step < a.max_steps and time.time() < deadline:
        if cursor + b > n:
            perm, cursor = torch.randperm(n, device=dev), 0
        real = random_dihedral(x[perm[cursor:cursor + b]])
        cursor += b
        decay = 0.9999 ** (step // 100)
        for g in optD.param_groups: g["lr"] = D_RATE * decay
        for g in optG.param_groups: g["lr"] = G_RATE * decay
        fake = G(torch.randn(b, LATENT, device=dev))
        targets[:b].zero_()
        targets[b:].uniform_(0.8, 1.0)
        lossD = F.mse_loss(D(diff_augment(torch.cat([fake.detach(), real]))), targets)
        optD.zero_grad(set_to_none=True); lossD.backward(); optD.step()
        lossG = F.mse_loss(D(diff_augment(fake)), ones)
        optG.zero_grad(set_to_none=True); lossG.backward(); optG.step()
        with torch.no_grad():
            torch._foreach_lerp_(avg_params, list(D.parameters()), 1 - 0.999)
        step += 1
        if step % 1000 == 0:
            say(event="step", step=step, d_loss=round(lossD.item(), 4), g_loss=round(lossG.item(), 4),
                steps_per_s=round(step / (time.time() - start), 1))
        if at and step == at[0]:
            at.pop(0)
            save(f"step{step}", D_avg)
            saved = step
    say(event="end", step=step, seconds=round(time.time() - start, 1))
    if saved != step:  # the last --at step may be the end
        save(f"step{step}", D_avg)
    G.eval()
    with torch.no_grad():
        samples = G(torch.randn(64, LATENT, device=dev)).float().cpu().numpy()
    np.save(os.path.join(a.out, "samples.npy"), samples)
    say(event="done")


if __name__ == "__main__":
    main()
