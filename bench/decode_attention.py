"""One absorbed-MLA decode attention layer: today's plain path vs bmm vs the fused kernel (CUDA).

    PYTHONPATH=src python bench/decode_attention.py            # the 2B's shapes, bf16, H200

Per case (batch B, cache length L; 16 heads, latent 512 + rope 64, lengths ragged within the
batch only where noted), microseconds per call (triton.testing.do_bench median, launch
overhead included) of:
  sdpa_mask  gather the rows (`LatentCache.read`) + SDPA with the boolean absorbed mask (the
             plain path, what decode ran before the kernel)
  bmm        gather + bmm + fp32 softmax + bmm (the issue's 'plain bmm' column)
  fused      `mla_decode_attention`: split-K over the slab read in place + combine
and the fused kernel's achieved bandwidth over the bytes it must read (B x L x 1152). Last
line: JSON.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from youtu.model.attention import absorbed_mask
from youtu.model.decode_attention import mla_decode_attention

H, C, R = 16, 512, 64
SCALE = 192 ** -0.5
CASES = [(1, 1024), (1, 8192), (1, 32768), (1, 131072), (32, 640), (64, 4096)]


def main() -> None:
    from triton.testing import do_bench

    dev = "cuda"
    rows_out = []
    print(f"# absorbed MLA decode attention, {torch.cuda.get_device_name()}, bf16, H={H}, "
          f"C+R={C + R}, torch {torch.__version__}")
    print("| B | L | sdpa_mask us | bmm us | fused us | fused GB/s | fused vs sdpa | rel err |")
    print("|---|---|---|---|---|---|---|---|")
    for B, L in CASES:
        g = torch.Generator(device=dev).manual_seed(B * L)
        kv = torch.randn(B + 1, L, C + R, device=dev, dtype=torch.bfloat16, generator=g)
        q = torch.randn(B, H, C + R, device=dev, dtype=torch.bfloat16, generator=g)
        rows = torch.arange(1, B + 1, device=dev)
        lengths = torch.full((B,), L, device=dev)
        mask = absorbed_mask((lengths - 1)[:, None], L, H)

        def sdpa_mask():
            k = kv[:, :L].index_select(0, rows)[:, None]
            return F.scaled_dot_product_attention(q[:, None], k, k[..., :C], attn_mask=mask,
                                                  scale=SCALE)[:, 0]

        def bmm():
            k = kv[:, :L].index_select(0, rows)  # [B, L, C+R]
            s = torch.bmm(q, k.transpose(1, 2)).float() * SCALE
            return torch.bmm(s.softmax(-1).to(k.dtype), k[..., :C])

        def fused():
            return mla_decode_attention(q, kv, rows, lengths, SCALE, L, R)

        ref = sdpa_mask().float()
        err = ((fused().float() - ref).norm() / ref.norm()).item()
        t = {name: do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3
             for name, fn in (("sdpa_mask", sdpa_mask), ("bmm", bmm), ("fused", fused))}
        gbs = B * L * (C + R) * 2 / (t["fused"] * 1e-6) / 1e9
        row = {"batch": B, "cache_len": L, **{f"{k}_us": v for k, v in t.items()},
               "fused_gb_s": gbs, "rel_err": err}
        rows_out.append(row)
        print(f"| {B} | {L} | {t['sdpa_mask']:.1f} | {t['bmm']:.1f} | {t['fused']:.1f} | "
              f"{gbs:.0f} | {t['sdpa_mask'] / t['fused']:.1f}x | {err:.1e} |", flush=True)
        del kv, q, mask
        torch.cuda.empty_cache()
    print(json.dumps({"bench": "decode_attention", "hardware": torch.cuda.get_device_name(),
                      "rows": rows_out}))


if __name__ == "__main__":
    main()
