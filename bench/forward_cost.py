"""What one verification forward of the embedded model costs on this CPU, by tree size and cache length.

Usage::

    .venv/bin/python bench/forward_cost.py [--cached 80,600] [--max-tokens 16] [--reps 10] [--threads 2]

For each cache length, scores a tree of ``n`` tokens (a root and ``n - 1`` children, with its 4-D mask) on
top of that many cached tokens, ``n = 1 .. max-tokens``, through ``decodekit.models.HFCausalLM`` (which
runs grouped-query attention on the key/value heads) and through the model's own call (transformers'
sdpa, which copies the cached keys and values once per query-head group under a mask). The cache is
compacted back after every forward; sizes take turns so that drift hits all alike. Prints the median
milliseconds per forward. The linears are prepacked (``decodekit.models.prepack_linears``), as in
``bench/generate_e2e.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cached", default="80,600", help="comma-separated cache lengths")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    import torch
    from decodekit import DraftTree
    from decodekit.models import HFCausalLM, load_default, prepack_linears

    if args.threads:
        torch.set_num_threads(args.threads)
    model, _ = load_default()
    prepack_linears(model)
    lm = HFCausalLM(model)
    sizes = range(1, args.max_tokens + 1)
    print(f"median ms per forward, torch {torch.__version__} on {torch.get_num_threads()} threads\n")
    print("| cached | path | " + " | ".join(str(n) for n in sizes) + " |")
    print("|---|---|" + "---:|" * len(sizes))
    for cached in (int(c) for c in args.cached.split(",")):
        times: dict[tuple[str, int], list[float]] = {}
        with torch.inference_mode():
            cache = lm.new_cache()
            lm.prefill(torch.randint(0, lm.vocab_size, (1, cached)), torch.arange(cached)[None], cache)
            prefix = np.arange(cached, dtype=np.int64)
            for _ in range(args.reps):
                for n in sizes:
                    tree = DraftTree(
                        np.arange(n, dtype=np.int32), np.array([-1] + [0] * (n - 1), dtype=np.int32)
                    )
                    ids = torch.randint(0, lm.vocab_size, (1, n))
                    positions = torch.from_numpy(tree.positions(cached).astype(np.int64))[None]
                    mask = torch.from_numpy(tree.attention_mask_with_prefix(cached))[None, None]
                    for path in ("HFCausalLM", "transformers"):
                        began = time.perf_counter()
                        if path == "HFCausalLM":
                            lm.forward(ids, positions, mask, cache)
                        else:
                            model(
                                input_ids=ids,
                                position_ids=positions,
                                attention_mask=mask.to(lm._dtype),
                                use_cache=True,
                                **{lm._cache_argument: cache},
                            )
                        times.setdefault((path, n), []).append(time.perf_counter() - began)
                        lm.keep(cache, prefix)
        for path in ("HFCausalLM", "transformers"):
            cells = " | ".join(f"{1e3 * float(np.median(times[(path, n)])):.1f}" for n in sizes)
            print(f"| {cached} | {path} | {cells} |")


if __name__ == "__main__":
    main()
