// Shared by every decodekit kernel; decodekit.cuda prepends it (after the configuration #defines) to
// each kernel source. Pointers are passed as 64-bit integers so that the launcher can hand over torch
// tensors of any dtype (CuPy has no bfloat16) without conversion. No CUDA header is included: the
// fp16/bf16 conversions are written out, so every kernel compiles with NVRTC alone.
//
// Configuration: DK_BF16 is 1 for bfloat16 values, 0 for float16.

#ifndef DK_BF16
#error "DK_BF16 must be defined (0 or 1)"
#endif

typedef unsigned short dk_bits16;     // one fp16 or bf16 value
typedef unsigned int dk_bits32;       // two of them (an element pair along the head dimension)
typedef unsigned long long dk_ptr;

#define DK_FULL_MASK 0xffffffffu

// PTX helpers stay behind DK_EMULATOR: tests/cuda_emulator/dk_emulator.h defines the same functions for
// the CPU emulator.
#ifndef DK_EMULATOR
__device__ __forceinline__ float dk_half_to_float(dk_bits16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x));
    return f;
}

__device__ __forceinline__ dk_bits16 dk_float_to_half(float f) {
    dk_bits16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

__device__ __forceinline__ float dk_to_float(dk_bits16 x) {
#if DK_BF16
    return __uint_as_float(((unsigned int)x) << 16);
#else
    return dk_half_to_float(x);
#endif
}

__device__ __forceinline__ dk_bits16 dk_from_float(float f) {
#if DK_BF16
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (dk_bits16)((u >> 16) | 0x40u);  // quiet NaN
    }
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
    return (dk_bits16)(u >> 16);
#else
    return dk_float_to_half(f);
#endif
}

__device__ __forceinline__ float2 dk_pair_to_float2(dk_bits32 pair) {
    return make_float2(dk_to_float((dk_bits16)(pair & 0xffffu)), dk_to_float((dk_bits16)(pair >> 16)));
}

__device__ __forceinline__ float dk_warp_max(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        x = fmaxf(x, __shfl_xor_sync(DK_FULL_MASK, x, offset));
    }
    return x;
}

__device__ __forceinline__ float dk_warp_sum(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        x += __shfl_xor_sync(DK_FULL_MASK, x, offset);
    }
    return x;
}

