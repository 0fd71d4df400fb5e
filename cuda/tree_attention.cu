// Tree attention for speculative decoding: the T tokens of a draft tree attend to a KV cache whose first
// `prefix_len` keys (the verified prefix) are visible to every tree token and whose next T keys are the
// tree tokens themselves, visible along the tree's ancestor mask (bit j of row i: tree token i sees tree
// token j; the DraftTree.packed_mask() layout, int32 words, little-endian bits).
//
// Decode-time attention is memory-bound for small T, so the work is arranged to read each KV tile once per
// KV head for all the query rows that share it: a block owns one KV head, up to DK_ROWS query rows (the T
// tree tokens x the DK_GROUP query heads of that KV head) and one slice of the key range (split-K). Each
// split keeps a numerically stable online softmax in fp32 (running max and sum in the log2 domain) and
// writes its unnormalized partial output; dk_tree_attention_combine merges the splits.
//
// Configuration, prepended as #defines by decodekit.cuda (one compiled module per configuration):
//   DK_BF16      1 for bfloat16 inputs and output, 0 for float16
//   DK_HEAD_DIM  64 or 128
//   DK_GROUP     query heads per KV head (GQA group size)
//
// decodekit.cuda prepends cuda/dk_common.cuh (fp16/bf16 conversions, warp reductions, pointer type).

#ifndef DK_HEAD_DIM
#error "DK_HEAD_DIM must be defined (64 or 128)"
#endif
#ifndef DK_GROUP
#error "DK_GROUP must be defined"
#endif
#ifndef DK_BF16
#error "DK_BF16 must be defined (0 or 1)"
#endif
#if DK_HEAD_DIM != 64 && DK_HEAD_DIM != 128
#error "DK_HEAD_DIM must be 64 or 128"
#endif

#define DK_WARPS 8
#define DK_THREADS (DK_WARPS * 32)
#define DK_ROWS_PER_WARP 8
#define DK_ROWS (DK_WARPS * DK_ROWS_PER_WARP)  // query rows per block
#define DK_KEYS 32                              // keys per tile: one per lane
#define DK_PAIRS (DK_HEAD_DIM / 2)              // element pairs per row
#define DK_PAIRS_PER_LANE (DK_PAIRS / 32)       // output pairs each lane accumulates (1 or 2)
#define DK_K_STRIDE (DK_PAIRS + 1)              // padded K rows: lane j reads row j without bank conflicts
#define DK_MAX_MASK_WORDS 4                     // T <= 128
#define DK_NEG_INF (-__int_as_float(0x7f800000))

// One split of the key range for one KV head and up to DK_ROWS query rows.
//
// q: [T, Hq, D]; k, v: [L, Hkv, D] with L >= prefix_len + T; mask: int32 [T, mask_words].
// Row r of the block is global row R = blockIdx.z * DK_ROWS + r, which is tree token R / DK_GROUP and
// query head kv_head * DK_GROUP + R % DK_GROUP.
// partial_out: fp32 [splits, Hkv, T * DK_GROUP, D] (unnormalized); partial_ml: fp32 [splits, Hkv, T * DK_GROUP, 2]
// holding the running max (log2 domain) and the running sum of each row.
extern "C" __global__ void __launch_bounds__(DK_THREADS)
dk_tree_attention_split(dk_ptr q_ptr, dk_ptr k_ptr, dk_ptr v_ptr, dk_ptr mask_ptr, int num_tree, int prefix_len,
                        int num_q_heads, int num_kv_heads, int mask_words, float scale_log2, int keys_per_split,
                        dk_ptr partial_out_ptr, dk_ptr partial_ml_ptr) {
    const dk_bits32* q = (const dk_bits32*)q_ptr;
    const dk_bits32* k = (const dk_bits32*)k_ptr;
    const dk_bits32* v = (const dk_bits32*)v_ptr;
    const unsigned int* mask = (const unsigned int*)mask_ptr;
    float* partial_out = (float*)partial_out_ptr;
    float* partial_ml = (float*)partial_ml_ptr;

    __shared__ dk_bits32 s_q[DK_ROWS * DK_PAIRS];
    __shared__ dk_bits32 s_k[DK_KEYS * DK_K_STRIDE];
    __shared__ dk_bits32 s_v[DK_KEYS * DK_PAIRS];
    __shared__ unsigned int s_mask[DK_ROWS * DK_MAX_MASK_WORDS];

    const int split = blockIdx.x;
    const int kv_head = blockIdx.y;
    const int row0 = blockIdx.z * DK_ROWS;
    const int rows_total = num_tree * DK_GROUP;
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int num_keys = prefix_len + num_tree;
    const int key_begin = split * keys_per_split;
    const int key_end = min(num_keys, key_begin + keys_per_split);

    // Query rows (zeros past the last row) and their tree masks.
    for (int i = threadIdx.x; i < DK_ROWS * DK_PAIRS; i += DK_THREADS) {
        const int r = i / DK_PAIRS;
        const int pair = i % DK_PAIRS;
        const int row = row0 + r;
        dk_bits32 value = 0;
        if (row < rows_total) {
            const int token = row / DK_GROUP;
            const int head = kv_head * DK_GROUP + row % DK_GROUP;
            value = q[((size_t)token * num_q_heads + head) * DK_PAIRS + pair];
        }
        s_q[i] = value;
    }
    for (int i = threadIdx.x; i < DK_ROWS * DK_MAX_MASK_WORDS; i += DK_THREADS) {
        const int r = i / DK_MAX_MASK_WORDS;
        const int word = i % DK_MAX_MASK_WORDS;
        const int row = row0 + r;
        s_mask[i] = (row < rows_total && word < mask_words) ? mask[(row / DK_GROUP) * mask_words + word] : 0u;
    }

    float row_max[DK_ROWS_PER_WARP];
    float row_sum[DK_ROWS_PER_WARP];
    float2 acc[DK_ROWS_PER_WARP][DK_PAIRS_PER_LANE];
#pragma unroll
    for (int i = 0; i < DK_ROWS_PER_WARP; ++i) {
        row_max[i] = DK_NEG_INF;
        row_sum[i] = 0.0f;
#pragma unroll
        for (int p = 0; p < DK_PAIRS_PER_LANE; ++p) {
            acc[i][p] = make_float2(0.0f, 0.0f);
        }
    }
    // Rows of this warp that exist (warp-uniform, so the loops below never diverge within a warp).
    const int warp_rows = max(0, min(DK_ROWS_PER_WARP, rows_total - row0 - warp * DK_ROWS_PER_WARP));

    for (int tile = key_begin; tile < key_end; tile += DK_KEYS) {
        __syncthreads();  // the previous tile's K and V are no longer read (and s_q, s_mask are written)
        for (int i = threadIdx.x; i < DK_KEYS * DK_PAIRS; i += DK_THREADS) {
            const int key = i / DK_PAIRS;
            const int pair = i % DK_PAIRS;
            dk_bits32 kv = 0, vv = 0;
            if (tile + key < key_end) {
                const size_t offset = ((size_t)(tile + key) * num_kv_heads + kv_head) * DK_PAIRS + pair;
                kv = k[offset];
                vv = v[offset];
            }
            s_k[key * DK_K_STRIDE + pair] = kv;
            s_v[key * DK_PAIRS + pair] = vv;
        }
        __syncthreads();
        if (warp_rows == 0) {
            continue;
        }

        // Scores: lane j scores key tile + j against each of the warp's rows.
        const int key = tile + lane;
        const bool key_exists = key < key_end;
        const bool in_prefix = key < prefix_len;
        const int tree_key = key - prefix_len;
        float score[DK_ROWS_PER_WARP];
#pragma unroll
        for (int i = 0; i < DK_ROWS_PER_WARP; ++i) {
            score[i] = 0.0f;
        }
#pragma unroll 4
        for (int pair = 0; pair < DK_PAIRS; ++pair) {
            const float2 kf = dk_pair_to_float2(s_k[lane * DK_K_STRIDE + pair]);
#pragma unroll
            for (int i = 0; i < DK_ROWS_PER_WARP; ++i) {
                const float2 qf = dk_pair_to_float2(s_q[(warp * DK_ROWS_PER_WARP + i) * DK_PAIRS + pair]);
                score[i] = fmaf(qf.x, kf.x, fmaf(qf.y, kf.y, score[i]));
            }
        }

        // Online softmax update, one row at a time, with the probabilities kept in registers (lane = key).
        float prob[DK_ROWS_PER_WARP];
#pragma unroll
        for (int i = 0; i < DK_ROWS_PER_WARP; ++i) {
            prob[i] = 0.0f;
            if (i >= warp_rows) {
                continue;
            }
            const int r = warp * DK_ROWS_PER_WARP + i;
            bool visible = key_exists && in_prefix;
            if (key_exists && !in_prefix) {
                visible = (s_mask[r * DK_MAX_MASK_WORDS + (tree_key >> 5)] >> (tree_key & 31)) & 1u;
            }
            const float s = visible ? score[i] * scale_log2 : DK_NEG_INF;
            const float new_max = fmaxf(row_max[i], dk_warp_max(s));
            if (new_max == DK_NEG_INF) {
                continue;  // nothing visible to this row yet
            }
            const float correction = exp2f(row_max[i] - new_max);  // 0 when row_max was -inf
            const float p = exp2f(s - new_max);                     // 0 for hidden keys
            row_sum[i] = row_sum[i] * correction + dk_warp_sum(p);
            row_max[i] = new_max;
#pragma unroll
            for (int pp = 0; pp < DK_PAIRS_PER_LANE; ++pp) {
                acc[i][pp].x *= correction;
                acc[i][pp].y *= correction;
            }
            prob[i] = p;
        }

        // Weighted values: lane l accumulates element pairs l, l + 32 (for D = 128) of every row.
#pragma unroll 4
        for (int j = 0; j < DK_KEYS; ++j) {
            float2 vf[DK_PAIRS_PER_LANE];
#pragma unroll
            for (int pp = 0; pp < DK_PAIRS_PER_LANE; ++pp) {
                vf[pp] = dk_pair_to_float2(s_v[j * DK_PAIRS + lane + 32 * pp]);
            }
#pragma unroll
            for (int i = 0; i < DK_ROWS_PER_WARP; ++i) {
                const float p = __shfl_sync(DK_FULL_MASK, prob[i], j);
#pragma unroll
                for (int pp = 0; pp < DK_PAIRS_PER_LANE; ++pp) {
                    acc[i][pp].x = fmaf(p, vf[pp].x, acc[i][pp].x);
                    acc[i][pp].y = fmaf(p, vf[pp].y, acc[i][pp].y);
                }
            }
        }
    }

    // Partial results of this split (rows with nothing visible write max = -inf and sum = 0).
#pragma unroll
    for (int i = 0; i < DK_ROWS_PER_WARP; ++i) {
        if (i >= warp_rows) {
            continue;
        }
        const int row = row0 + warp * DK_ROWS_PER_WARP + i;
        const size_t slot = ((size_t)split * num_kv_heads + kv_head) * rows_total + row;
#pragma unroll
        for (int pp = 0; pp < DK_PAIRS_PER_LANE; ++pp) {
            float2* out = (float2*)(partial_out + slot * DK_HEAD_DIM);
            out[lane + 32 * pp] = acc[i][pp];
        }
        if (lane == 0) {
            partial_ml[slot * 2] = row_max[i];
            partial_ml[slot * 2 + 1] = row_sum[i];
        }
    }
}

// Merge the splits of every (row, KV head): out = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s with
// M = max_s m_s. A row that sees no key at all gets zeros. Grid: (T * DK_GROUP, Hkv); block: D / 2 threads.
extern "C" __global__ void __launch_bounds__(DK_PAIRS)
dk_tree_attention_combine(dk_ptr partial_out_ptr, dk_ptr partial_ml_ptr, int num_splits, int num_tree,
                          int num_q_heads, int num_kv_heads, dk_ptr out_ptr) {
    const float* partial_out = (const float*)partial_out_ptr;
    const float* partial_ml = (const float*)partial_ml_ptr;
    dk_bits32* out = (dk_bits32*)out_ptr;
    const int row = blockIdx.x;
    const int kv_head = blockIdx.y;
    const int pair = threadIdx.x;
    const int rows_total = num_tree * DK_GROUP;

    float global_max = DK_NEG_INF;
    for (int s = 0; s < num_splits; ++s) {
        const size_t slot = ((size_t)s * num_kv_heads + kv_head) * rows_total + row;
        global_max = fmaxf(global_max, partial_ml[slot * 2]);
    }
    float2 numerator = make_float2(0.0f, 0.0f);
    float denominator = 0.0f;
    if (global_max != DK_NEG_INF) {
        for (int s = 0; s < num_splits; ++s) {
            const size_t slot = ((size_t)s * num_kv_heads + kv_head) * rows_total + row;
            const float m = partial_ml[slot * 2];
            if (m == DK_NEG_INF) {
                continue;
            }
            const float weight = exp2f(m - global_max);
            denominator += weight * partial_ml[slot * 2 + 1];
            const float2 part = ((const float2*)(partial_out + slot * DK_HEAD_DIM))[pair];
            numerator.x += weight * part.x;
            numerator.y += weight * part.y;
        }
    }
    const float inv = denominator > 0.0f ? 1.0f / denominator : 0.0f;
    const int token = row / DK_GROUP;
    const int head = kv_head * DK_GROUP + row % DK_GROUP;
    const dk_bits32 lo = dk_from_float(numerator.x * inv);
    const dk_bits32 hi = dk_from_float(numerator.y * inv);
    out[((size_t)token * num_q_heads + head) * DK_PAIRS + pair] = lo | (hi << 16);
}
