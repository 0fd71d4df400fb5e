// Weight-only quantized matmul: y[M, N] = x[M, K] @ dequant(W)^T for an nn.Linear weight W[N, K] stored
// as int8 or int4 codes with one scale (and optionally one zero point) per group of input columns, in the
// layout of decodekit.quant (see rust/decodekit-core/src/quant.rs):
//   packed  int32 [N, K * DK_BITS / 32]; int4 words hold codes v0 v2 v4 v6 v1 v3 v5 v7 (low nibble first),
//           int8 words hold v0..v3 (low byte first); codes are unsigned
//   scales  fp16/bf16 [N, K / group_size]; zeros the same shape, or absent for the symmetric zero 2^(bits-1)
//   weight  = (code - zero) * scale
//
// The kernels:
//   dk_quant_swap_n{1,2}   the tensor-core kernels for small M (decodekit.cuda's choice up to 16 rows): the
//                          weights are the mma's m16 operand and up to 8 or 16 activation rows (1 or 2 n8
//                          tiles) its n8 operand, so an mma covers 16 features. For groups that hold whole
//                          warp steps they multiply the exact (code - zero) and scale each group's sum once,
//                          in fp32.
//   dk_quant_mma_m{1,2,4}  the tensor-core kernels for larger M: the activations are the m16 operand (16, 32
//                          or 64 rows: 1, 2 or 4 m16 tiles; rows past M are zeros), the weights the n8 one.
//   Both kinds share one body: a block of four warps owns 128 output features, a block of activation rows
//   and a slice of K. It copies codes and activations into shared memory with cp.async stages ahead,
//   dequantizes in registers with the lop3/magic-number conversion the packing was chosen for, and
//   multiplies on the tensor cores (mma.m16n8k16, fp32 accumulation). Split-K slices write fp32 partials;
//   the last slice of each output tile to finish sums them in a fixed order (the result does not depend
//   on scheduling). Needs K % (4 * DK_K_THREAD) == 0, group_size % DK_K_THREAD == 0 and N % 8 == 0.
//   dk_quant_matmul        the generic CUDA-core kernel for any shape: one warp per output feature, up to
//                          DK_M_TILE activation rows at once, larger M in slices along gridDim.y.
//
// Configuration (#defines prepended by decodekit.cuda, after cuda/dk_common.cuh):
//   DK_BF16  1 for bfloat16 activations, scales and output, 0 for float16
//   DK_BITS  4 or 8
//   DK_QM_PROBE_COPY_ONLY  1 to build the tensor-core kernel without its arithmetic (a measurement hook;
//                          default 0)
//   DK_QM_PROBE_TILED      1 (with DK_QM_PROBE_COPY_ONLY) to read each stage's codes as one contiguous run,
//                          as a tile-major layout would (a measurement hook; default 0)
//   DK_QM_PROBE_MATH_ONLY  1 to build the tensor-core kernel without copying codes (it multiplies whatever
//                          shared memory holds: a measurement hook; default 0)
//   DK_QM_STAGES_M{1,2,4}, DK_QM_SUBSTEPS_M{1,2,4}, DK_QM_MIN_BLOCKS_M{1,2,4}  the pipeline of each mma
//                          kernel (see decodekit.cuda.QUANT_PIPELINES); the same with N{1,2} for the swap
//                          kernels (decodekit.cuda.SWAP_PIPELINES)

#ifndef DK_BITS
#error "DK_BITS must be defined (4 or 8)"
#endif
#if DK_BITS != 4 && DK_BITS != 8
#error "DK_BITS must be 4 or 8"
#endif

#ifndef DK_QM_PROBE_COPY_ONLY
#define DK_QM_PROBE_COPY_ONLY 0
#endif
#ifndef DK_QM_PROBE_TILED
#define DK_QM_PROBE_TILED 0
#endif
#ifndef DK_QM_PROBE_MATH_ONLY
#define DK_QM_PROBE_MATH_ONLY 0
#endif

#define DK_QM_WARPS 4
#define DK_QM_THREADS (DK_QM_WARPS * 32)
#define DK_M_TILE 8
#define DK_CODES_PER_WORD (32 / DK_BITS)
// Input columns of one thread's 16-byte load of packed codes (32 for int4, 16 for int8).
#define DK_K_THREAD (128 / DK_BITS)
// Input columns one warp covers per step: the four threads of an mma row group side by side.
#define DK_K_STEP (4 * DK_K_THREAD)
// n8 tiles per warp (32 output features).
#define DK_NT 4

// ---------------------------------------------------------------------------------------------------------
// Generic CUDA-core kernel.

// The codes of one packed word, in column order, as floats (exact: 2^23 + code minus 2^23).
__device__ __forceinline__ void dk_unpack_word(unsigned int word, float codes[DK_CODES_PER_WORD]) {
#if DK_BITS == 4
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        codes[2 * i] = __uint_as_float(0x4b000000u | ((word >> (4 * i)) & 0xfu)) - 8388608.0f;
        codes[2 * i + 1] = __uint_as_float(0x4b000000u | ((word >> (4 * i + 16)) & 0xfu)) - 8388608.0f;
    }
#else
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        codes[i] = __uint_as_float(0x4b000000u | ((word >> (8 * i)) & 0xffu)) - 8388608.0f;
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

// ---------------------------------------------------------------------------------------------------------
// Tensor-core kernel.
//
// mma.m16n8k16 (row.col) fragments, lane = 4 * g + t:
//   A (x, 16 x 16):  a0 = (row g, k 2t..2t+1)  a1 = (row g+8, k 2t..2t+1)  a2 = (row g, k 2t+8..9)  a3 = (row g+8, ...)
//   B (W^T, 16 x 8): b0 = (k 2t..2t+1, col g)  b1 = (k 2t+8..2t+9, col g)
//   C (16 x 8 fp32): c0, c1 = (row g, cols 2t, 2t+1)  c2, c3 = (row g+8, cols 2t, 2t+1)
// A dot product does not care in which order its k run, so the kernel renames them: in mma step q of a
// warp step starting at column k0, thread t's logical k 2t, 2t+1 are the physical columns kb + 4q, +1 and its
// logical k 2t+8, 2t+9 are kb + 4q + 2, +3, with kb = k0 + t * DK_K_THREAD. A and B use the same renaming,
// so each thread's B operands are 16 consecutive bytes of codes of its own row and its A operands 16-byte
// runs of consecutive activations.
//
// Pipeline: a block is four warps that share an m-block and a K slice (and own 128 consecutive output
// features). Each warp step, the block copies the packed codes of its 128 rows (64 bytes each) and the
// activation tile ([16 * MT, DK_K_STEP], rows past M left at zero) into shared memory with cp.async,
// DK_STAGES - 1 steps ahead of the step it multiplies; the scales of a step are loaded into registers as
// far ahead. Nothing the loads bring in is touched before its step, so several steps of loads are in
// flight without holding registers.

// PTX helpers, behind DK_EMULATOR: tests/cuda_emulator/dk_emulator.h defines the same functions for the CPU
// emulator.
#ifndef DK_EMULATOR
__device__ __forceinline__ unsigned int dk_lop3_and_or(unsigned int a, unsigned int b, unsigned int c) {
    unsigned int d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(b), "r"(c));  // (a & b) | c
    return d;
}

__device__ __forceinline__ unsigned int dk_prmt(unsigned int a, unsigned int b, unsigned int selector) {
    unsigned int d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(selector));
    return d;
}

// pair * mul + add, both halves; exact whenever the result is representable.
__device__ __forceinline__ unsigned int dk_fma2(unsigned int pair, unsigned int mul2, unsigned int add2) {
    unsigned int d;
#if DK_BF16
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(pair), "r"(mul2), "r"(add2));
#else
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(pair), "r"(mul2), "r"(add2));
#endif
    return d;
}

// {high, low} rounded to bf16 (nearest even) in one register, low in the lower half.
__device__ __forceinline__ unsigned int dk_pack_bf16x2(float high, float low) {
    unsigned int d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(high), "f"(low));
    return d;
}

__device__ __forceinline__ void dk_mma(float c[4], unsigned int a0, unsigned int a1, unsigned int a2, unsigned int a3,
                                       unsigned int b0, unsigned int b1) {
#if DK_BF16
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ unsigned int dk_shared_address(const void* p) {
    unsigned int address;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(address) : "l"(p));
    return address;
}

// 16 bytes from global memory to shared-memory address `shared` (see dk_shared_address), or 16 zero bytes
// (and no read) when `valid` is false.
__device__ __forceinline__ void dk_copy16_async(unsigned int shared, const void* global, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" : : "r"(shared), "l"(global), "r"(valid ? 16 : 0)
                 : "memory");
}

__device__ __forceinline__ void dk_copy_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int PENDING>
__device__ __forceinline__ void dk_copy_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(PENDING) : "memory");
}
#endif  // DK_EMULATOR

#define DK_NEG_ZERO2 0x80008000u
#if DK_BF16
#define DK_MAGIC_HALF 0x4300u   // bf16 128.0: 128 + c is exact for c < 128
#define DK_MAGIC_VALUE 128.0f
#define DK_ONE2 0x3f803f80u
#define DK_SIXTEENTH2 0x3d803d80u
#else
#define DK_MAGIC_HALF 0x6400u   // fp16 1024.0: 1024 + c is exact for c < 1024
#define DK_MAGIC_VALUE 1024.0f
#define DK_ONE2 0x3c003c00u
#define DK_SIXTEENTH2 0x2c002c00u
#endif

__device__ __forceinline__ unsigned int dk_pair_of(float value) {
    const unsigned int h = dk_from_float(value);
    return h | (h << 16);
}

// The dequantization operands of one tile and step: the scale in both halves; -(magic + zero) for pairs
// that hold magic + code; -(magic / 16 + zero) for fp16 int4 pairs that hold magic + 16 code (scaled by
// 1/16 first); 2^23 + zero for bf16 int8, which goes through fp32.
struct DkStepConstants {
    unsigned int scale2;
    unsigned int low_bias2;
    unsigned int high_bias2;
    float bias32;
};

__device__ __forceinline__ DkStepConstants dk_step_constants(dk_bits16 scale, dk_bits16 zero_bits, bool symmetric) {
    const float zero = symmetric ? (float)(1 << (DK_BITS - 1)) : dk_to_float(zero_bits);
    DkStepConstants c;
    c.scale2 = (unsigned int)scale | ((unsigned int)scale << 16);
    c.low_bias2 = dk_pair_of(-(DK_MAGIC_VALUE + zero));
    c.high_bias2 = dk_pair_of(-(DK_MAGIC_VALUE / 16.0f + zero));
    c.bias32 = 8388608.0f + zero;
    return c;
}

// The (code - zero) pairs of one packed word as fp16/bf16 pairs, exact (small integers). int4: pair i holds
// columns 2i, 2i+1 of the word (nibble order v0 v2 v4 v6 v1 v3 v5 v7: for fp16 the masks 0x000f000f and
// 0x00f000f0 pick (v0, v1) and 16 (v2, v3), and the same after a shift by 8 pick (v4, v5) and 16 (v6, v7)).
// int8: pairs 0 and 1 hold columns 0..3 (pairs 2 and 3 are zeros).
__device__ __forceinline__ void dk_unscaled_word(unsigned int word, const DkStepConstants& c, unsigned int pairs[4]) {
#if DK_BITS == 4 && DK_BF16
    // bf16 has 7 mantissa bits: a code shifted by 4 would reach the exponent, so each pair is shifted down.
    const unsigned int magic2 = DK_MAGIC_HALF | (DK_MAGIC_HALF << 16);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        pairs[i] = dk_fma2(dk_lop3_and_or(word >> (4 * i), 0x000f000fu, magic2), DK_ONE2, c.low_bias2);
    }
#elif DK_BITS == 4
    const unsigned int magic2 = DK_MAGIC_HALF | (DK_MAGIC_HALF << 16);
    const unsigned int shifted = word >> 8;
    const unsigned int low[2] = {dk_lop3_and_or(word, 0x000f000fu, magic2), dk_lop3_and_or(shifted, 0x000f000fu, magic2)};
    const unsigned int high[2] = {dk_lop3_and_or(word, 0x00f000f0u, magic2), dk_lop3_and_or(shifted, 0x00f000f0u, magic2)};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        pairs[2 * i] = dk_fma2(low[i], DK_ONE2, c.low_bias2);
        pairs[2 * i + 1] = dk_fma2(high[i], DK_SIXTEENTH2, c.high_bias2);
    }
#elif DK_BF16
    // 128 + c is not exact in bf16 for c >= 128: convert through fp32 (2^23 + c), where it is.
    float f[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[i] = __uint_as_float(dk_prmt(word, 0x4b000000u, 0x7540u + i)) - c.bias32;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        pairs[i] = dk_pack_bf16x2(f[2 * i + 1], f[2 * i]);
    }
    pairs[2] = pairs[3] = 0u;
#else
    pairs[0] = dk_fma2(dk_prmt(word, 0x64646464u, 0x4140u), DK_ONE2, c.low_bias2);
    pairs[1] = dk_fma2(dk_prmt(word, 0x64646464u, 0x4342u), DK_ONE2, c.low_bias2);
    pairs[2] = pairs[3] = 0u;
#endif
}

// The weight pairs of one packed word, (code - zero) * scale, rounded once (layout as dk_unscaled_word).
__device__ __forceinline__ void dk_dequant_word(unsigned int word, const DkStepConstants& c, unsigned int pairs[4]) {
    dk_unscaled_word(word, c, pairs);
#pragma unroll
    for (int i = 0; i < (DK_BITS == 4 ? 4 : 2); ++i) {
        pairs[i] = dk_fma2(pairs[i], c.scale2, DK_NEG_ZERO2);
    }
}

// Activation tile rows are DK_K_STEP / 8 chunks of 16 bytes; chunk c of row r is stored at chunk
// dk_swizzle(r, c), so that the eight lanes of each quarter-warp's 16-byte reads (rows g, g + 1, threads
// t = 0..3) land on distinct banks.
__device__ __forceinline__ int dk_swizzle(int row, int chunk) {
    return (chunk & ~7) | ((chunk & 7) ^ ((((chunk >> 3) & 1) << 1) | (row & 1)));
}

__device__ __forceinline__ unsigned int dk_component(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;  // i is a compile-time constant at every use
}

// Packed words of one row's codes per warp step (64 bytes for int4 and int8 alike).
#define DK_ROW_WORDS (DK_K_STEP / DK_CODES_PER_WORD)
#define DK_BLOCK_ROWS (DK_QM_WARPS * DK_NT * 8)
// 16-byte chunks of one activation row per warp step.
#define DK_X_CHUNKS (DK_K_STEP / 8)

// The group of input column `column`: a shift when the group size is a power of two (group_shift >= 0).
__device__ __forceinline__ int dk_group_of(int column, int group_size, int group_shift) {
    return group_shift >= 0 ? column >> group_shift : column / group_size;
}

// One warp step of a swap kernel: for each chunk u of the thread's DK_K_THREAD columns and each feature tile
// f, the A operands are the weight pairs of features g (tile j = 2f) and g + 8 (j = 2f + 1), the B
// operands 16 bytes of token g's activations. SCALED: the pairs are (code - zero) * scale; otherwise the
// exact (code - zero), and the caller scales the sum once per group in fp32.
template <int MT, bool SCALED>
__device__ __forceinline__ void dk_swap_step(const uint4 codes[DK_NT], const DkStepConstants constants[DK_NT],
                                             const dk_bits16 (*x_tile)[DK_K_STEP], int x_rows, int g, int t,
                                             float part[MT][DK_NT / 2][4]) {
#pragma unroll
    for (int u = 0; u < DK_K_THREAD / 8; ++u) {
        // Activations kb + 8u .. kb + 8u + 7 (kb = t * DK_K_THREAD): components (x, y) feed mma step 2u,
        // (z, w) step 2u + 1.
        const int chunk = t * (DK_K_THREAD / 8) + u;
        uint4 b[MT];  // token g of each token tile
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            const int r = 8 * mt + g;
            // a token tile wholly past M is zeros without a shared-memory read (uniform)
            b[mt] = 8 * mt < x_rows ? *(const uint4*)&x_tile[r][8 * dk_swizzle(r, chunk)] : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int f = 0; f < DK_NT / 2; ++f) {
            // lo / hi[q]: the pairs of features g / g + 8 of tile f for mma step 2u + q.
            unsigned int lo[2][4], hi[2][4];
#if DK_BITS == 4
            unsigned int lo_pairs[4], hi_pairs[4];
            if (SCALED) {
                dk_dequant_word(dk_component(codes[2 * f], u), constants[2 * f], lo_pairs);
                dk_dequant_word(dk_component(codes[2 * f + 1], u), constants[2 * f + 1], hi_pairs);
            } else {
                dk_unscaled_word(dk_component(codes[2 * f], u), constants[2 * f], lo_pairs);
                dk_unscaled_word(dk_component(codes[2 * f + 1], u), constants[2 * f + 1], hi_pairs);
            }
#pragma unroll
            for (int q = 0; q < 2; ++q) {
                lo[q][0] = lo_pairs[2 * q];
                lo[q][1] = lo_pairs[2 * q + 1];
                hi[q][0] = hi_pairs[2 * q];
                hi[q][1] = hi_pairs[2 * q + 1];
            }
#else
#pragma unroll
            for (int q = 0; q < 2; ++q) {
                if (SCALED) {
                    dk_dequant_word(dk_component(codes[2 * f], 2 * u + q), constants[2 * f], lo[q]);
                    dk_dequant_word(dk_component(codes[2 * f + 1], 2 * u + q), constants[2 * f + 1], hi[q]);
                } else {
                    dk_unscaled_word(dk_component(codes[2 * f], 2 * u + q), constants[2 * f], lo[q]);
                    dk_unscaled_word(dk_component(codes[2 * f + 1], 2 * u + q), constants[2 * f + 1], hi[q]);
                }
            }
#endif
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                dk_mma(part[mt][f], lo[0][0], hi[0][0], lo[0][1], hi[0][1], b[mt].x, b[mt].y);
                dk_mma(part[mt][f], lo[1][0], hi[1][0], lo[1][1], hi[1][1], b[mt].z, b[mt].w);
            }
        }
    }
}

// The tensor-core kernels. Grid: (ceil(N / DK_BLOCK_ROWS), splits, ceil(M / X_ROWS)); block: DK_QM_THREADS;
// dynamic shared memory: STAGES * SUBSTEPS * (DK_BLOCK_ROWS * 64 + X_ROWS * DK_K_STEP * 2) bytes. Each split
// covers `steps_per_split` warp steps of DK_K_STEP columns, copied SUBSTEPS at a time (one pipeline stage, so
// that each row is read in runs of SUBSTEPS * 64 bytes). With splits == 1 the warp writes y [M, N]
// directly; otherwise fp32 partials [splits, M, N] (and the last block of each tile sums them), with one
// zeroed int32 counter per (blockIdx.x, blockIdx.z) tile in counters_ptr.
//
// SWAP = false ("mma" kernels): the activations are the m16 operand A (MT m16 tiles, X_ROWS = 16 MT rows)
// and the weights the n8 operand B (DK_NT tiles of 8 features).
// SWAP = true ("swap" kernels, for small M): the weights are the m16 operand A (DK_NT / 2 tiles of 16
// features: rows g and g + 8 of tile f are the features of j = 2f and 2f + 1 below) and the activations the
// n8 operand B (MT tiles of 8 tokens, X_ROWS = 8 MT rows). An mma then covers 16 features instead of 8, so
// there are half as many, and both operands come straight from where they are made: the dequantized pairs
// and 16-byte activation loads, with no register moves. C holds (feature, token) instead of (token,
// feature).
template <int MT, int STAGES, int SUBSTEPS, bool SWAP>
__device__ __forceinline__ void dk_quant_mma_body(dk_ptr x_ptr, dk_ptr packed_ptr, dk_ptr scales_ptr, dk_ptr zeros_ptr,
                                                  int m_total, int n_total, int k_total, int group_size,
                                                  int group_shift, int steps_per_split, dk_ptr y_ptr,
                                                  dk_ptr partial_ptr, dk_ptr counters_ptr) {
    constexpr int X_ROWS = SWAP ? 8 * MT : 16 * MT;
    const dk_bits16* x = (const dk_bits16*)x_ptr;
    const unsigned int* packed = (const unsigned int*)packed_ptr;
    const dk_bits16* scales = (const dk_bits16*)scales_ptr;
    const dk_bits16* zeros = (const dk_bits16*)zeros_ptr;
    extern __shared__ __align__(16) unsigned char dk_shared[];
    typedef unsigned int CodeTile[DK_BLOCK_ROWS][DK_ROW_WORDS];
    typedef dk_bits16 ActivationTile[X_ROWS][DK_K_STEP];
    CodeTile* code_tiles = (CodeTile*)dk_shared;                                              // [STAGES * SUBSTEPS]
    ActivationTile* x_tiles = (ActivationTile*)(dk_shared + STAGES * SUBSTEPS * sizeof(CodeTile));  // same

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int g = lane / 4;
    const int t = lane % 4;
    const int block_n0 = blockIdx.x * DK_BLOCK_ROWS;
    const int n0 = block_n0 + warp * (8 * DK_NT);
    // A warp past N still copies and meets every barrier; it only skips the arithmetic.
    const bool active = n0 < n_total;
    const bool symmetric = zeros == 0;
    const int m0 = blockIdx.z * X_ROWS;
    const int x_rows = min(X_ROWS, m_total - m0);
    const int total_steps = k_total / DK_K_STEP;
    const int step_begin = blockIdx.y * steps_per_split;
    const int step_end = min(total_steps, step_begin + steps_per_split);
    const int stage_count = (step_end - step_begin + SUBSTEPS - 1) / SUBSTEPS;
    const int words_per_row = k_total / DK_CODES_PER_WORD;
    const int groups = k_total / group_size;

    // Activation rows past M stay zero in every tile; the loop's first barrier publishes this.
    for (int c = threadIdx.x; c < STAGES * SUBSTEPS * X_ROWS * DK_X_CHUNKS; c += DK_QM_THREADS) {
        const int r = c / DK_X_CHUNKS % X_ROWS;
        if (r >= x_rows) {
            *(uint4*)&x_tiles[c / (X_ROWS * DK_X_CHUNKS)][r][8 * (c % DK_X_CHUNKS)] = make_uint4(0u, 0u, 0u, 0u);
        }
    }

    // This thread's code copies: copy i of each stage takes 16 bytes of block row `code_row(i)` for step
    // `code_substep(i)` of the stage; consecutive threads copy consecutive 16 bytes of a row.
    constexpr int CODE_COPIES = DK_BLOCK_ROWS * 4 * SUBSTEPS / DK_QM_THREADS;
    constexpr int ROWS_PER_COPY = DK_QM_THREADS / (4 * SUBSTEPS);  // block rows between copy i and i + 1
    const int code_row0 = threadIdx.x / (4 * SUBSTEPS);
    const int code_substep = (threadIdx.x / 4) % SUBSTEPS;
    const int code_word = 4 * (threadIdx.x % 4);
    const unsigned int* code_source =
        packed + (size_t)min(block_n0 + code_row0, n_total - 1) * words_per_row + code_substep * DK_ROW_WORDS + code_word;
    const size_t code_copy_stride = (size_t)ROWS_PER_COPY * words_per_row;  // words from copy i to i + 1
    // Shared-memory addresses (32-bit) of this thread's copy 0 into tile 0; a buffer is SUBSTEPS tiles.
    const unsigned int code_target = dk_shared_address(&code_tiles[code_substep][code_row0][code_word]);

    unsigned int code_valid = 0;  // bit i: block row of copy i is a row of the weight
#pragma unroll
    for (int i = 0; i < CODE_COPIES; ++i) {
        code_valid |= (unsigned int)(block_n0 + code_row0 + ROWS_PER_COPY * i < n_total) << i;
    }
    // This thread's activation copies: the stage's SUBSTEPS * X_ROWS tile rows of DK_X_CHUNKS chunks each
    // are spread over the threads, X_ROW_STEP rows per round. Copy i takes chunk x_chunk of stage row
    // x_row + i * X_ROW_STEP: tile row x_r + (i * X_ROW_STEP) % X_ROWS of step x_p + (i * X_ROW_STEP) / X_ROWS.
    // (X_ROWS and X_ROW_STEP are powers of two, so one divides the other and these are exact.) The rows of
    // copy i and copy 0 differ by an even number, so their chunks have the same swizzle.
    constexpr int X_ROW_STEP = DK_QM_THREADS / DK_X_CHUNKS;
    constexpr int X_COPIES = (SUBSTEPS * X_ROWS + X_ROW_STEP - 1) / X_ROW_STEP;
    const int x_chunk = threadIdx.x % DK_X_CHUNKS;
    const int x_r = threadIdx.x / DK_X_CHUNKS % X_ROWS;
    const int x_p = threadIdx.x / DK_X_CHUNKS / X_ROWS;
    unsigned int x_valid = 0;  // bit i: copy i is an activation row, not past M
#pragma unroll
    for (int i = 0; i < X_COPIES; ++i) {
        x_valid |= (unsigned int)(x_r + (i * X_ROW_STEP) % X_ROWS < x_rows) << i;
    }
    const dk_bits16* x_source = x + (size_t)(m0 + min(x_r, x_rows - 1)) * k_total + x_p * DK_K_STEP + 8 * x_chunk;
    const unsigned int x_tile_target = dk_shared_address(x_tiles) + x_p * (unsigned int)sizeof(ActivationTile) +
                                       2 * (x_r * DK_K_STEP + 8 * dk_swizzle(x_r, x_chunk));

    // Copy the codes and activations of stage `index` (steps step_begin + SUBSTEPS * index + p) into tile
    // group `buffer` (one commit group).
    auto copy_stage = [&](int buffer, int index) {
        const int first = step_begin + SUBSTEPS * index;
        const int steps = min(SUBSTEPS, step_end - first);
        const bool step_valid = code_substep < steps;
        const unsigned int* stage_codes = code_source + first * DK_ROW_WORDS;
        const unsigned int code_buffer = code_target + buffer * SUBSTEPS * (unsigned int)sizeof(CodeTile);
        const unsigned int x_buffer = x_tile_target + buffer * SUBSTEPS * (unsigned int)sizeof(ActivationTile);
#pragma unroll
        for (int i = 0; i < CODE_COPIES; ++i) {
            const bool valid = step_valid && ((code_valid >> i) & 1u);
#if DK_QM_PROBE_TILED
            // Measurement hook: read the same number of bytes as if each block's stage were one contiguous run
            // (a tile-major layout); only meaningful with DK_QM_PROBE_COPY_ONLY.
            const unsigned int* source =
                valid ? packed + ((size_t)blockIdx.x * total_steps + first) * DK_BLOCK_ROWS * DK_ROW_WORDS +
                            4 * (threadIdx.x + DK_QM_THREADS * i)
                      : packed;
#else
            // a row past N is not read (valid is false), but its copy still gets an address inside the weight
            const unsigned int* source = valid ? stage_codes + i * code_copy_stride : packed;
#endif
            if (!DK_QM_PROBE_MATH_ONLY) {
                dk_copy16_async(code_buffer + i * ROWS_PER_COPY * DK_ROW_WORDS * 4u, source, valid);
            }
        }
        const dk_bits16* stage_x = x_source + first * DK_K_STEP;
#pragma unroll
        for (int i = 0; i < X_COPIES; ++i) {
            const int rows = (i * X_ROW_STEP) % X_ROWS;  // compile-time constants
            const int p = (i * X_ROW_STEP) / X_ROWS;
            if (((x_valid >> i) & 1u) && x_p + p < steps) {
                dk_copy16_async(x_buffer + p * (unsigned int)sizeof(ActivationTile) + rows * DK_K_STEP * 2u,
                                stage_x + (size_t)rows * k_total + p * DK_K_STEP, true);
            }
        }
        dk_copy_commit();
    };
    // The scale (low half) and zero point (high half) of this thread's group in each tile, for each step
    // of stage `index`. Rows past N get zeros (their codes are copied as zeros too).
    const dk_bits16* scale_row = scales + (size_t)(n0 + g) * groups;  // tile j's row: + j * 8 * groups
    const dk_bits16* zero_row = symmetric ? scale_row : zeros + (size_t)(n0 + g) * groups;
    unsigned int tile_valid = 0;  // bit j: tile j is in N (N % 8 == 0: a tile is wholly in or wholly out)
#pragma unroll
    for (int j = 0; j < DK_NT; ++j) {
        tile_valid |= (unsigned int)(n0 + 8 * j < n_total) << j;
    }
    auto load_scales = [&](int index, unsigned int out[SUBSTEPS][DK_NT]) {
#pragma unroll
        for (int p = 0; p < SUBSTEPS; ++p) {
            const int step = min(step_begin + SUBSTEPS * index + p, step_end - 1);
            const int group = dk_group_of(step * DK_K_STEP + t * DK_K_THREAD, group_size, group_shift);
#pragma unroll
            for (int j = 0; j < DK_NT; ++j) {
                const bool valid = (tile_valid >> j) & 1u;
                const unsigned int offset = j * 8 * groups + group;  // 32-bit: one IMAD.WIDE per address
                const unsigned int scale = valid ? scale_row[offset] : 0u;
                const unsigned int zero = valid && !symmetric ? zero_row[offset] : 0u;
                out[p][j] = scale | (zero << 16);
            }
        }
    };

    // acc[mt][j]: SWAP: (features of tile j, tokens of tile mt), j < DK_NT / 2; else (tokens of tile mt,
    // features of tile j).
    float acc[MT][DK_NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < DK_NT; ++j) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                acc[mt][j][c] = 0.0f;
            }
        }
    }
    // Swap kernels: the sum of the current group's products (see dk_swap_step), folded into acc once per
    // group when every column of a step is in one group (`fold`), else once at the end.
    float part[MT][DK_NT / 2][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int f = 0; f < DK_NT / 2; ++f) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                part[mt][f][c] = 0.0f;
            }
        }
    }
    const bool fold = group_size % DK_K_STEP == 0;
    // Folding: the steps left in the current group, counting down (a group holds group_size / DK_K_STEP).
    const int group_steps = fold ? group_size / DK_K_STEP : 1;
    int group_left = group_steps - step_begin % group_steps;
    const DkStepConstants symmetric_constants = dk_step_constants(0, 0, true);
    // The scales of the current stage and of the next one (loaded a stage ahead). One group spans the whole
    // row when groups == 1: its scales are loaded once.
    unsigned int current_scales[SUBSTEPS][DK_NT];
    unsigned int next_scales[SUBSTEPS][DK_NT];
#pragma unroll
    for (int i = 0; i < STAGES - 1; ++i) {
        if (i < stage_count) {
            copy_stage(i, i);
        } else {
            dk_copy_commit();  // empty groups keep the group count the wait below relies on
        }
    }
    if (active && stage_count > 0) {
        load_scales(0, current_scales);
#pragma unroll
        for (int p = 0; p < SUBSTEPS; ++p) {
#pragma unroll
            for (int j = 0; j < DK_NT; ++j) {
                next_scales[p][j] = current_scales[p][j];
            }
        }
    }
    int buffer = 0;               // the buffer of stage `index`
    int copy_buffer = STAGES - 1;  // the buffer of stage index + STAGES - 1
    for (int index = 0; index < stage_count; ++index) {
        dk_copy_wait<STAGES - 2>();  // this stage's group has landed (for this thread's copies)
        __syncthreads();             // ... and everyone's; everyone is also done with the buffer copied next
        if (index + STAGES - 1 < stage_count) {
            copy_stage(copy_buffer, index + STAGES - 1);
        } else {
            dk_copy_commit();
        }
        if (active && groups > 1 && index + 1 < stage_count) {
            load_scales(index + 1, next_scales);
        }
#pragma unroll
        for (int p = 0; p < SUBSTEPS; ++p) {
            const int step = step_begin + SUBSTEPS * index + p;
            if (!active || step >= step_end) {
                continue;
            }
            const int tile = buffer * SUBSTEPS + p;
#if DK_QM_PROBE_COPY_ONLY
            // Measurement hook (bench/gpu/quant_matmul.py): the pipeline without the arithmetic.
            acc[0][0][0] += __uint_as_float(code_tiles[tile][warp * (8 * DK_NT) + g][4 * t] & 0x007fffffu) +
                            __uint_as_float(current_scales[p][0] & 0x007fffffu);
#else
            // Codes of rows past N are zeros with zero scales: their products are zeros, so no tile is skipped.
            uint4 codes[DK_NT];
            DkStepConstants constants[DK_NT];
#pragma unroll
            for (int j = 0; j < DK_NT; ++j) {
                codes[j] = *(const uint4*)&code_tiles[tile][warp * (8 * DK_NT) + 8 * j + g][4 * t];
                if (symmetric) {  // uniform: the biases are fixed, only the scale changes
                    constants[j] = symmetric_constants;
                    constants[j].scale2 = (current_scales[p][j] & 0xffffu) * 0x10001u;
                } else {
                    constants[j] = dk_step_constants((dk_bits16)(current_scales[p][j] & 0xffffu),
                                                     (dk_bits16)(current_scales[p][j] >> 16), false);
                }
            }
            if (SWAP) {
                if (fold) {
                    dk_swap_step<MT, false>(codes, constants, x_tiles[tile], x_rows, g, t, part);
                } else {
                    dk_swap_step<MT, true>(codes, constants, x_tiles[tile], x_rows, g, t, part);
                }
                // At the end of a group (folded) or of the split: acc += scale * part (c0, c1 are feature g,
                // tile j = 2f; c2, c3 feature g + 8, j = 2f + 1).
                const bool group_end = --group_left == 0;
                if (group_end) {
                    group_left = group_steps;
                }
                if (step == step_end - 1 || (fold && group_end)) {
#pragma unroll
                    for (int f = 0; f < DK_NT / 2; ++f) {
                        const float scale_lo = fold ? dk_to_float((dk_bits16)(current_scales[p][2 * f] & 0xffffu)) : 1.0f;
                        const float scale_hi =
                            fold ? dk_to_float((dk_bits16)(current_scales[p][2 * f + 1] & 0xffffu)) : 1.0f;
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                            for (int c = 0; c < 4; ++c) {
                                acc[mt][f][c] = fmaf(c < 2 ? scale_lo : scale_hi, part[mt][f][c], acc[mt][f][c]);
                                part[mt][f][c] = 0.0f;
                            }
                        }
                    }
                }
                continue;
            }
#pragma unroll
            for (int u = 0; u < DK_K_THREAD / 8; ++u) {
                // Activations kb + 8u .. kb + 8u + 7 (kb = t * DK_K_THREAD): components (x, y) feed mma step
                // 2u, (z, w) step 2u + 1.
                const int chunk = t * (DK_K_THREAD / 8) + u;
                uint4 a[MT][2];  // rows g and g + 8 of each token tile
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int r = 16 * mt + 8 * h + g;
                        // eight rows that are all past M are zeros without a shared-memory read (uniform)
                        a[mt][h] = 16 * mt + 8 * h < x_rows
                                       ? *(const uint4*)&x_tiles[tile][r][8 * dk_swizzle(r, chunk)]
                                       : make_uint4(0u, 0u, 0u, 0u);
                    }
                }
#pragma unroll
                for (int j = 0; j < DK_NT; ++j) {
                    // b[q] = the (b0, b1) operands of mma step 2u + q.
                    unsigned int b[2][2];
#if DK_BITS == 4
                    unsigned int pairs[4];
                    dk_dequant_word(dk_component(codes[j], u), constants[j], pairs);
                    b[0][0] = pairs[0];
                    b[0][1] = pairs[1];
                    b[1][0] = pairs[2];
                    b[1][1] = pairs[3];
#else
#pragma unroll
                    for (int q = 0; q < 2; ++q) {
                        unsigned int pairs[4];
                        dk_dequant_word(dk_component(codes[j], 2 * u + q), constants[j], pairs);
                        b[q][0] = pairs[0];
                        b[q][1] = pairs[1];
                    }
#endif
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        dk_mma(acc[mt][j], a[mt][0].x, a[mt][1].x, a[mt][0].y, a[mt][1].y, b[0][0], b[0][1]);
                        dk_mma(acc[mt][j], a[mt][0].z, a[mt][1].z, a[mt][0].w, a[mt][1].w, b[1][0], b[1][1]);
                    }
                }
            }
#endif
        }
#pragma unroll
        for (int p = 0; p < SUBSTEPS; ++p) {
#pragma unroll
            for (int j = 0; j < DK_NT; ++j) {
                current_scales[p][j] = next_scales[p][j];
            }
        }
        buffer = buffer + 1 == STAGES ? 0 : buffer + 1;
        copy_buffer = copy_buffer + 1 == STAGES ? 0 : copy_buffer + 1;
    }
    const bool direct = gridDim.y == 1;
    dk_bits16* y = (dk_bits16*)y_ptr;
    float* partials = (float*)partial_ptr;
    float* partial = partials + (size_t)blockIdx.y * m_total * n_total;
    if (active && SWAP) {
        // c0, c1 = (feature g, tokens 2t, 2t + 1), c2, c3 = (feature g + 8, same tokens) of each tile pair.
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int f = 0; f < DK_NT / 2; ++f) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int row = m0 + 8 * mt + 2 * t + c % 2;
                    const int col = n0 + 16 * f + 8 * (c / 2) + g;
                    if (row < m_total && col < n_total) {
                        if (direct) {
                            y[(size_t)row * n_total + col] = dk_from_float(acc[mt][f][c]);
                        } else {
                            partial[(size_t)row * n_total + col] = acc[mt][f][c];
                        }
                    }
                }
            }
        }
    } else if (active) {
        // c0, c1 = (row g, cols 2t, 2t + 1), c2, c3 = (row g + 8, same cols) of each tile.
#pragma unroll
        for (int mt = 0; mt < (SWAP ? 0 : MT); ++mt) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = m0 + 16 * mt + 8 * h + g;
                if (row >= m_total) {
                    continue;
                }
#pragma unroll
                for (int j = 0; j < DK_NT; ++j) {
                    const int col = n0 + 8 * j + 2 * t;
                    if (n0 + 8 * j >= n_total) {
                        continue;
                    }
                    const float lo = acc[mt][j][2 * h];
                    const float hi = acc[mt][j][2 * h + 1];
                    if (direct) {
                        const dk_bits32 pair = (dk_bits32)dk_from_float(lo) | ((dk_bits32)dk_from_float(hi) << 16);
                        *(dk_bits32*)(y + (size_t)row * n_total + col) = pair;
                    } else {
                        *(float2*)(partial + (size_t)row * n_total + col) = make_float2(lo, hi);
                    }
                }
            }
        }
    }
    if (direct) {
        return;
    }

    // Split-K: the last block of this output tile to finish sums the tile's partials in split order and
    // rounds once, so the result does not depend on which block finishes last. Its counter (one per tile,
    // zero before the launch) goes back to zero for the next launch on the stream.
    __shared__ int dk_last_block;
    __threadfence();  // this thread's partials are visible to the block that will read them
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned int* counter = (unsigned int*)counters_ptr + blockIdx.z * gridDim.x + blockIdx.x;
        const bool last = atomicAdd(counter, 1u) == gridDim.y - 1;
        if (last) {
            *counter = 0u;
        }
        dk_last_block = last;
    }
    __syncthreads();
    if (!dk_last_block) {
        return;
    }
    __threadfence();
    const int tile_cols = min(DK_BLOCK_ROWS, n_total - block_n0);
    for (int e = threadIdx.x; e < x_rows * DK_BLOCK_ROWS; e += DK_QM_THREADS) {
        const int col = e % DK_BLOCK_ROWS;
        if (col < tile_cols) {
            const size_t index = (size_t)(m0 + e / DK_BLOCK_ROWS) * n_total + block_n0 + col;
            float total = 0.0f;
            for (int split = 0; split < (int)gridDim.y; ++split) {
                total += __ldcg(partials + (size_t)split * m_total * n_total + index);
            }
            y[index] = dk_from_float(total);
        }
    }
}

// The pipeline shape of each kernel (stages, steps per stage, blocks per SM to fit in registers) comes from
// decodekit.cuda, which also sizes the dynamic shared memory from it.
#define DK_QUANT_TC_KERNEL(NAME, MT, SWAP, STAGES, SUBSTEPS, MIN_BLOCKS)                                          \
    extern "C" __global__ void __launch_bounds__(DK_QM_THREADS, MIN_BLOCKS)                                   \
        NAME(dk_ptr x_ptr, dk_ptr packed_ptr, dk_ptr scales_ptr, dk_ptr zeros_ptr, int m_total, int n_total,     \
             int k_total, int group_size, int group_shift, int steps_per_split, dk_ptr y_ptr, dk_ptr partial_ptr,   \
             dk_ptr counters_ptr) {                                                                              \
        dk_quant_mma_body<MT, STAGES, SUBSTEPS, SWAP>(x_ptr, packed_ptr, scales_ptr, zeros_ptr, m_total, n_total,  \
                                                      k_total, group_size, group_shift, steps_per_split, y_ptr,  \
                                                      partial_ptr, counters_ptr);                               \
    }

DK_QUANT_TC_KERNEL(dk_quant_mma_m1, 1, false, DK_QM_STAGES_M1, DK_QM_SUBSTEPS_M1, DK_QM_MIN_BLOCKS_M1)
DK_QUANT_TC_KERNEL(dk_quant_mma_m2, 2, false, DK_QM_STAGES_M2, DK_QM_SUBSTEPS_M2, DK_QM_MIN_BLOCKS_M2)
DK_QUANT_TC_KERNEL(dk_quant_mma_m4, 4, false, DK_QM_STAGES_M4, DK_QM_SUBSTEPS_M4, DK_QM_MIN_BLOCKS_M4)
DK_QUANT_TC_KERNEL(dk_quant_swap_n1, 1, true, DK_QM_STAGES_N1, DK_QM_SUBSTEPS_N1, DK_QM_MIN_BLOCKS_N1)
DK_QUANT_TC_KERNEL(dk_quant_swap_n2, 2, true, DK_QM_STAGES_N2, DK_QM_SUBSTEPS_N2, DK_QM_MIN_BLOCKS_N2)
