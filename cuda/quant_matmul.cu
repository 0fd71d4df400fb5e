// Weight-only quantized matmul: y[M, N] = x[M, K] @ dequant(W)^T for an nn.Linear weight W[N, K] stored
// as int8 or int4 codes with one scale (and optionally one zero point) per group of input columns, in the
// layout of decodekit.quant (see rust/decodekit-core/src/quant.rs):
//   packed  int32 [N, K * DK_BITS / 32]; int4 words hold codes v0 v2 v4 v6 v1 v3 v5 v7 (low nibble first),
//           int8 words hold v0..v3 (low byte first); codes are unsigned
//   scales  fp16/bf16 [N, K / group_size]; zeros the same shape, or absent for the symmetric zero 2^(bits-1)
//   weight  = (code - zero) * scale
//
// Three kernels:
//   dk_quant_mma_m{1,2,4}  the tensor-core kernel: one warp owns 32 output features, 16 * DK_MT activation
//                          rows (1, 2 or 4 m16 tiles; rows past M are zeros) and a slice of K. It streams its
//                          packed rows with 16-byte loads, dequantizes in registers with the lop3/magic-number
//                          conversion the packing was chosen for, and multiplies on the tensor cores
//                          (mma.m16n8k16, fp32 accumulation). Split-K slices write fp32 partials that
//                          dk_quant_reduce sums in a fixed order (the result does not depend on scheduling).
//                          Needs K % (4 * DK_K_THREAD) == 0, group_size % DK_K_THREAD == 0 and N % 8 == 0.
//   dk_quant_reduce        sums the split-K partials and rounds to the output dtype.
//   dk_quant_matmul        the generic CUDA-core kernel for any shape: one warp per output feature, up to
//                          DK_M_TILE activation rows at once, larger M in slices along gridDim.y.
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
// so each thread's B operands come from one 16-byte load of consecutive codes of its own row and its A
// operands from 16-byte loads of consecutive activations.

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

// A pair of exact small integers (as fp16/bf16 with the magic bias still on) minus `bias2`, times `scale2`.
__device__ __forceinline__ unsigned int dk_unbias_scale(unsigned int pair, unsigned int bias2, unsigned int scale2) {
    unsigned int d;
#if DK_BF16
    // bf16 has no sub/mul before sm_90: pair * 1 + (-bias), then * scale + (-0). The first is exact.
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(pair), "r"(0x3f803f80u), "r"(bias2));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(d), "r"(scale2), "r"(0x80008000u));
#else
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(pair), "r"(bias2));
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(d), "r"(scale2));
#endif
    return d;
}

// The magic exponent that turns a small code c in a 16-bit half's low bits into the value bias + c.
#if DK_BF16
#define DK_MAGIC_HALF 0x4300u   // bf16 128.0: 128 + c is exact for c < 128
#define DK_MAGIC_VALUE 128.0f
#else
#define DK_MAGIC_HALF 0x6400u   // fp16 1024.0: 1024 + c is exact for c < 1024
#define DK_MAGIC_VALUE 1024.0f
#endif

// The bias operand of dk_unbias_scale for zero point `zero`, in both halves: magic + zero for fp16 (it is
// subtracted), -(magic + zero) for bf16 (it is added). bf16 int8 goes through fp32 and uses the fp32 bias.
__device__ __forceinline__ unsigned int dk_bias2(float zero) {
#if DK_BF16
    const unsigned int h = dk_from_float(-(DK_MAGIC_VALUE + zero));
#else
    const unsigned int h = dk_from_float(DK_MAGIC_VALUE + zero);
#endif
    return h | (h << 16);
}

// The four (k, k+1) weight pairs of one packed word as fp16/bf16 pairs: pair i holds columns 2i, 2i+1 of the
// word (int4), or pairs 0 and 1 hold columns 0..3 (int8; pairs 2 and 3 unused).
__device__ __forceinline__ void dk_dequant_word(unsigned int word, unsigned int bias2, float bias32,
                                                unsigned int scale2, unsigned int pairs[4]) {
#if DK_BITS == 4
    const unsigned int magic2 = DK_MAGIC_HALF | (DK_MAGIC_HALF << 16);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        pairs[i] = dk_unbias_scale(dk_lop3_and_or(word >> (4 * i), 0x000f000fu, magic2), bias2, scale2);
    }
#elif DK_BF16
    // 128 + c is not exact in bf16 for c >= 128: convert through fp32 (2^23 + c), where it is.
    float f[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[i] = __uint_as_float(dk_prmt(word, 0x4b000000u, 0x7540u + i)) - bias32;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        unsigned int packed_pair;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(packed_pair) : "f"(f[2 * i + 1]), "f"(f[2 * i]));
        asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(pairs[i]) : "r"(packed_pair), "r"(scale2), "r"(0x80008000u));
    }
    pairs[2] = pairs[3] = 0u;
#else
    pairs[0] = dk_unbias_scale(dk_prmt(word, 0x64646464u, 0x4140u), bias2, scale2);
    pairs[1] = dk_unbias_scale(dk_prmt(word, 0x64646464u, 0x4342u), bias2, scale2);
    pairs[2] = pairs[3] = 0u;
#endif
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

__device__ __forceinline__ uint4 dk_load16(const void* p) {
    uint4 v;
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// Activations go through shared memory: each block (four warps that share an m-block and a K slice) copies
// the next step's [16 * MT, DK_K_STEP] activation tile with cp.async while it computes the current one.
// Rows past M are zero-filled by the copy. A row is DK_K_STEP / 8 chunks of 16 bytes; chunk c of row r is
// stored at chunk dk_swizzle(r, c), so that the eight lanes of each quarter-warp's 16-byte reads (rows g,
// g + 1, threads t = 0..3) land on distinct banks.
__device__ __forceinline__ int dk_swizzle(int row, int chunk) {
    return (chunk & ~7) | ((chunk & 7) ^ ((((chunk >> 3) & 1) << 1) | (row & 1)));
}

__device__ __forceinline__ unsigned int dk_shared_address(const void* p) {
    unsigned int address;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(address) : "l"(p));
    return address;
}

// 16 bytes from global to shared memory, or 16 zero bytes when `valid` is false.
__device__ __forceinline__ void dk_copy16_async(void* shared, const void* global, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                 :
                 : "r"(dk_shared_address(shared)), "l"(global), "r"(valid ? 16 : 0)
                 : "memory");
}

__device__ __forceinline__ void dk_copy_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

__device__ __forceinline__ void dk_copy_wait_all_but_one() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }

__device__ __forceinline__ unsigned int dk_component(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;  // i is a compile-time constant at every use
}

// One warp step's packed codes (one 16-byte load per n8 tile) and the raw scale and zero point of its
// thread's group in each tile. Nothing here is used before the next step, so the loads stay in flight while
// the current step computes; dk_step_constants turns them into the dequantization operands then.
struct DkWeightStep {
    uint4 codes[DK_NT];
    dk_bits16 scale[DK_NT];
    dk_bits16 zero[DK_NT];
};

__device__ __forceinline__ void dk_load_weight_step(DkWeightStep& s, const unsigned int* packed, const dk_bits16* scales,
                                                    const dk_bits16* zeros, int n0, int n_total, int g, int k,
                                                    int words_per_row, int groups, int group_size) {
    const int group = k / group_size;
#pragma unroll
    for (int j = 0; j < DK_NT; ++j) {
        const int n = n0 + 8 * j + g;
        if (n0 + 8 * j < n_total) {  // N % 8 == 0: a tile is wholly in or wholly out
            s.codes[j] = dk_load16(packed + (size_t)n * words_per_row + k / DK_CODES_PER_WORD);
            s.scale[j] = scales[(size_t)n * groups + group];
            s.zero[j] = zeros ? zeros[(size_t)n * groups + group] : (dk_bits16)0;
        } else {
            s.codes[j] = make_uint4(0u, 0u, 0u, 0u);
            s.scale[j] = 0;
            s.zero[j] = 0;
        }
    }
}

// The dequantization operands of one tile: the scale in both halves, the bias (magic + zero) in both
// halves and, for bf16 int8, as fp32.
__device__ __forceinline__ void dk_step_constants(dk_bits16 scale, dk_bits16 zero_bits, bool symmetric,
                                                  unsigned int& scale2, unsigned int& bias2, float& bias32) {
    const float zero = symmetric ? (float)(1 << (DK_BITS - 1)) : dk_to_float(zero_bits);
    scale2 = (unsigned int)scale | ((unsigned int)scale << 16);
    bias2 = dk_bias2(zero);
    bias32 = 8388608.0f + zero;
}

// Grid: (ceil(N / (32 * DK_QM_WARPS)), splits, ceil(M / (16 * MT))); block: DK_QM_THREADS. Each split covers
// `steps_per_split` warp steps of DK_K_STEP columns. With splits == 1 the warp writes y [M, N] directly;
// otherwise fp32 partials [splits, M, N] for dk_quant_reduce.
template <int MT>
__device__ __forceinline__ void dk_quant_mma_body(dk_ptr x_ptr, dk_ptr packed_ptr, dk_ptr scales_ptr, dk_ptr zeros_ptr,
                                                  int m_total, int n_total, int k_total, int group_size,
                                                  int steps_per_split, dk_ptr y_ptr, dk_ptr partial_ptr) {
    const dk_bits16* x = (const dk_bits16*)x_ptr;
    const unsigned int* packed = (const unsigned int*)packed_ptr;
    const dk_bits16* scales = (const dk_bits16*)scales_ptr;
    const dk_bits16* zeros = (const dk_bits16*)zeros_ptr;
    // Two activation tiles: the one being multiplied and the one being copied in.
    __shared__ __align__(16) dk_bits16 tiles[2][16 * MT][DK_K_STEP];

    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int g = lane / 4;
    const int t = lane % 4;
    const int n0 = (blockIdx.x * DK_QM_WARPS + warp) * (8 * DK_NT);
    // A warp past N still copies activations and meets every barrier; it only skips the arithmetic.
    const bool active = n0 < n_total;
    const int m0 = blockIdx.z * (16 * MT);
    const int total_steps = k_total / DK_K_STEP;
    const int step_begin = blockIdx.y * steps_per_split;
    const int step_end = min(total_steps, step_begin + steps_per_split);
    const int words_per_row = k_total / DK_CODES_PER_WORD;
    const int groups = k_total / group_size;
    const int chunks_per_row = DK_K_STEP / 8;

    // Copy the activation tile of `step` into tiles[buffer] (one commit group).
    auto copy_tile = [&](int buffer, int step) {
        for (int c = threadIdx.x; c < 16 * MT * chunks_per_row; c += DK_QM_THREADS) {
            const int r = c / chunks_per_row;
            const int chunk = c % chunks_per_row;
            const bool valid = m0 + r < m_total;
            const dk_bits16* source = valid ? x + (size_t)(m0 + r) * k_total + step * DK_K_STEP + 8 * chunk : x;
            dk_copy16_async(&tiles[buffer][r][8 * dk_swizzle(r, chunk)], source, valid);
        }
        dk_copy_commit();
    };

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

    DkWeightStep current;
    if (step_begin < step_end) {
        copy_tile(0, step_begin);
        if (active) {
            dk_load_weight_step(current, packed, scales, zeros, n0, n_total, g,
                                step_begin * DK_K_STEP + t * DK_K_THREAD, words_per_row, groups, group_size);
        }
    }
    for (int step = step_begin; step < step_end; ++step) {
        const int buffer = (step - step_begin) & 1;
        const int kb = step * DK_K_STEP + t * DK_K_THREAD;
        const bool more = step + 1 < step_end;
        DkWeightStep next;
        // The next step's activations and codes are in flight while this one computes.
        if (more) {
            copy_tile(buffer ^ 1, step + 1);
        } else {
            dk_copy_commit();  // an empty group keeps "all but the newest group" meaning this step's tile
        }
        if (more && active) {
            dk_load_weight_step(next, packed, scales, zeros, n0, n_total, g, kb + DK_K_STEP, words_per_row, groups,
                                group_size);
        }
        dk_copy_wait_all_but_one();
        __syncthreads();
        if (active) {
#pragma unroll
            for (int u = 0; u < DK_K_THREAD / 8; ++u) {
                // Activations kb + 8u .. kb + 8u + 7 of rows g and g + 8 of each tile: components (x, y) feed mma
                // step 2u, (z, w) step 2u + 1.
                const int chunk = t * (DK_K_THREAD / 8) + u;
                uint4 a[MT][2];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int r = 16 * mt + 8 * h + g;
                        a[mt][h] = *(const uint4*)&tiles[buffer][r][8 * dk_swizzle(r, chunk)];
                    }
                }
#pragma unroll
                for (int j = 0; j < DK_NT; ++j) {
                    if (n0 + 8 * j >= n_total) {
                        continue;
                    }
                    unsigned int scale2, bias2;
                    float bias32;
                    dk_step_constants(current.scale[j], current.zero[j], zeros == 0, scale2, bias2, bias32);
                    // b[q] = the (b0, b1) operands of mma step 2u + q.
                    unsigned int b[2][2];
#if DK_BITS == 4
                    unsigned int pairs[4];
                    dk_dequant_word(dk_component(current.codes[j], u), bias2, bias32, scale2, pairs);
                    b[0][0] = pairs[0];
                    b[0][1] = pairs[1];
                    b[1][0] = pairs[2];
                    b[1][1] = pairs[3];
#else
#pragma unroll
                    for (int q = 0; q < 2; ++q) {
                        unsigned int pairs[4];
                        dk_dequant_word(dk_component(current.codes[j], 2 * u + q), bias2, bias32, scale2, pairs);
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
        }
        __syncthreads();  // everyone is done with tiles[buffer] before the next step copies over it
        if (more) {
            current = next;
        }
    }
    if (!active) {
        return;
    }

    // c0, c1 = (row g, cols 2t, 2t + 1), c2, c3 = (row g + 8, same cols) of each tile.
    const bool direct = gridDim.y == 1;
    dk_bits16* y = (dk_bits16*)y_ptr;
    float* partial = (float*)partial_ptr + (size_t)blockIdx.y * m_total * n_total;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
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

#define DK_QUANT_MMA_KERNEL(MT)                                                                                  \
    extern "C" __global__ void __launch_bounds__(DK_QM_THREADS)                                                \
        dk_quant_mma_m##MT(dk_ptr x_ptr, dk_ptr packed_ptr, dk_ptr scales_ptr, dk_ptr zeros_ptr, int m_total,    \
                           int n_total, int k_total, int group_size, int steps_per_split, dk_ptr y_ptr,         \
                           dk_ptr partial_ptr) {                                                                \
        dk_quant_mma_body<MT>(x_ptr, packed_ptr, scales_ptr, zeros_ptr, m_total, n_total, k_total, group_size,    \
                              steps_per_split, y_ptr, partial_ptr);                                             \
    }

DK_QUANT_MMA_KERNEL(1)
DK_QUANT_MMA_KERNEL(2)
DK_QUANT_MMA_KERNEL(4)

// y[i] = sum over s of partial[s, i], in split order, rounded once. Grid: ceil(count / 256); block: 256.
extern "C" __global__ void __launch_bounds__(256)
dk_quant_reduce(dk_ptr partial_ptr, int splits, int count, dk_ptr y_ptr) {
    const int i = blockIdx.x * 256 + threadIdx.x;
    if (i >= count) {
        return;
    }
    const float* partial = (const float*)partial_ptr;
    float total = 0.0f;
    for (int s = 0; s < splits; ++s) {
        total += partial[(size_t)s * count + i];
    }
    ((dk_bits16*)y_ptr)[i] = dk_from_float(total);
}
