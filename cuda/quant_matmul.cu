// Weight-only quantized matmul: y[M, N] = x[M, K] @ dequant(W)^T for an nn.Linear weight W[N, K] stored
// as int8 or int4 codes with one scale (and optionally one zero point) per group of input columns, in the
// layout of decodekit.quant (see rust/decodekit-core/src/quant.rs):
//   packed  int32 [N, K * DK_BITS / 32]; int4 words hold codes v0 v2 v4 v6 v1 v3 v5 v7 (low nibble first),
//           int8 words hold v0..v3 (low byte first); codes are unsigned
//   scales  fp16/bf16 [N, K / group_size]; zeros the same shape, or absent for the symmetric zero 2^(bits-1)
//   weight  = (code - zero) * scale
//
// Decoding reads every weight once per step, so this is a memory-bound GEMV: one warp owns one output
// feature n, its lanes stream the packed row with coalesced 128-byte loads (each word is 8 or 4 weights of
// one group), dequantize in registers and multiply with up to DK_M_TILE activation rows at once, then
// reduce across the warp in fp32. Larger M runs as ceil(M / DK_M_TILE) slices along gridDim.y.
//
// Configuration (#defines prepended by decodekit.cuda, after cuda/dk_common.cuh):
//   DK_BF16  1 for bfloat16 activations, scales and output, 0 for float16
//   DK_BITS  4 or 8

#ifndef DK_BITS
#error "DK_BITS must be defined (4 or 8)"
#endif
#if DK_BITS != 4 && DK_BITS != 8
#error "DK_BITS must be 4 or 8"
#endif

#define DK_QM_WARPS 4
#define DK_QM_THREADS (DK_QM_WARPS * 32)
#define DK_M_TILE 8
#define DK_CODES_PER_WORD (32 / DK_BITS)

// The codes of one packed word, in column order.
__device__ __forceinline__ void dk_unpack_word(unsigned int word, float codes[DK_CODES_PER_WORD]) {
#if DK_BITS == 4
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        codes[2 * i] = (float)((word >> (4 * i)) & 0xfu);
        codes[2 * i + 1] = (float)((word >> (4 * i + 16)) & 0xfu);
    }
#else
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        codes[i] = (float)((word >> (8 * i)) & 0xffu);
    }
#endif
}

// Grid: (ceil(N / DK_QM_WARPS), ceil(M / DK_M_TILE)); block: DK_QM_THREADS. x: [M, K], y: [M, N].
// zeros_ptr == 0 means symmetric. group_size divides K and is a multiple of DK_CODES_PER_WORD, so all the
// codes of a word share one group.
extern "C" __global__ void __launch_bounds__(DK_QM_THREADS)
dk_quant_matmul(dk_ptr x_ptr, dk_ptr packed_ptr, dk_ptr scales_ptr, dk_ptr zeros_ptr, int m_total, int n_total,
                int k_total, int group_size, dk_ptr y_ptr) {
    const dk_bits16* x = (const dk_bits16*)x_ptr;
    const unsigned int* packed = (const unsigned int*)packed_ptr;
    const dk_bits16* scales = (const dk_bits16*)scales_ptr;
    const dk_bits16* zeros = (const dk_bits16*)zeros_ptr;
    dk_bits16* y = (dk_bits16*)y_ptr;

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * DK_QM_WARPS + warp;
    if (n >= n_total) {
        return;  // the whole warp leaves together; there is no block-wide barrier below
    }
    const int m0 = blockIdx.y * DK_M_TILE;
    const int rows = min(DK_M_TILE, m_total - m0);
    const int words = k_total / DK_CODES_PER_WORD;
    const int groups = k_total / group_size;
    const unsigned int* row_words = packed + (size_t)n * words;
    const float symmetric_zero = (float)(1 << (DK_BITS - 1));

    float acc[DK_M_TILE];
#pragma unroll
    for (int m = 0; m < DK_M_TILE; ++m) {
        acc[m] = 0.0f;
    }
    for (int w = lane; w < words; w += 32) {
        const int k0 = w * DK_CODES_PER_WORD;
        const int group = k0 / group_size;
        const float scale = dk_to_float(scales[(size_t)n * groups + group]);
        const float zero = zeros ? dk_to_float(zeros[(size_t)n * groups + group]) : symmetric_zero;
        float weight[DK_CODES_PER_WORD];
        dk_unpack_word(row_words[w], weight);
#pragma unroll
        for (int c = 0; c < DK_CODES_PER_WORD; ++c) {
            weight[c] = (weight[c] - zero) * scale;
        }
#pragma unroll
        for (int m = 0; m < DK_M_TILE; ++m) {
            if (m < rows) {
                const dk_bits32* xs = (const dk_bits32*)(x + (size_t)(m0 + m) * k_total + k0);
#pragma unroll
                for (int p = 0; p < DK_CODES_PER_WORD / 2; ++p) {
                    const float2 xf = dk_pair_to_float2(xs[p]);
                    acc[m] = fmaf(xf.x, weight[2 * p], fmaf(xf.y, weight[2 * p + 1], acc[m]));
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < DK_M_TILE; ++m) {
        const float total = dk_warp_sum(acc[m]);
        if (lane == 0 && m < rows) {
            y[(size_t)(m0 + m) * n_total + n] = dk_from_float(total);
        }
    }
}
