// A CPU emulator for decodekit's CUDA kernels, for tests on machines without a GPU (tests/cuda_emulator.py
// drives it). The kernel source is compiled as C++ with this header in front: every GPU thread of a block
// runs as a fiber (ucontext) on one OS thread, switching only at barriers, so a launch is deterministic.
//
// What it models:
//   - __syncthreads, and the warp-synchronous operations (shuffles, mma.sync), which need every lane of the
//     warp at the same operation; a lane that is missing (diverged or exited) is reported, not waited for;
//   - the PTX helpers the kernels keep behind `#ifndef DK_EMULATOR` (fp16 conversions, lop3, prmt, f16x2 and
//     bf16x2 fma, mma.m16n8k16 with the fragment layout of the PTX ISA, cp.async with its commit groups);
//   - cp.async either at issue ("early", which exposes a buffer overwritten while others still read it) or
//     as late as its wait_group allows ("late", which exposes data read before it was waited for); the
//     source must lie in a buffer the launch registered and the target in the dynamic shared memory;
//   - dynamic shared memory that starts as NaN bytes, and never as zeros.
// What it does not model: timing, memory coalescing, bank conflicts, register pressure (NVRTC's ptxas
// report covers those), races between plain shared-memory accesses without a barrier in between (the
// thread order can be reversed to shake some out), and out-of-bounds plain loads of global memory.
//
// The kernel source gets its configuration #defines before this header (DK_BF16 and friends are used here).
#pragma once

#include <math.h>
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#define DK_EMULATOR 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct dk_emu_dim3 {
    unsigned int x, y, z;
};
struct __attribute__((aligned(16))) uint4 {
    unsigned int x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }

inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}

// The built-in variables, set by the scheduler for the fiber it resumes.
static dk_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace dk_emu {

constexpr int kMaxShared = 232448;  // the most dynamic shared memory an sm_90 block can have
constexpr size_t kStackBytes = 256 * 1024;

struct Copy {
    void* target;
    const void* source;
    int bytes;
    bool valid;
};

struct Fiber {
    ucontext_t context;  // where the fiber starts (entered once with setcontext)
    jmp_buf resume;      // where it yielded (later switches are _setjmp / _longjmp: no signal-mask syscall)
    bool started = false;
    std::vector<char> stack;
    bool done = false;
    dk_emu_dim3 index{};
    std::vector<Copy> pending;                // issued, not committed
    std::deque<std::vector<Copy>> committed;  // commit groups, oldest first
};

// Where each lane of a warp stands at a warp-synchronous operation, and the values it brought.
struct WarpExchange {
    int arrived = 0;
    unsigned long long generation = 0;
    const char* operation = nullptr;
    std::array<std::array<unsigned int, 12>, 32> values{};
    unsigned long long computed = ~0ull;  // the generation whose mma results are in `results`
    std::array<std::array<float, 4>, 32> results{};
};

struct Launch {
    jmp_buf scheduler;
    std::vector<Fiber> fibers;
    std::vector<WarpExchange> warps;
    int current = -1;
    int live = 0;
    unsigned long long progress = 0;
    int block_arrived = 0;
    unsigned long long block_generation = 0;
    bool late_copies = true;
    bool reverse = false;
    bool reverse_blocks = false;
    bool failed = false;
    std::string error;
    size_t shared_bytes = 0;
    std::vector<std::pair<uintptr_t, uintptr_t>> regions;  // [begin, end) of the registered global buffers
    void (*body)(void*) = nullptr;
    void* body_argument = nullptr;
};

static Launch* launch_state = nullptr;
alignas(128) static unsigned char shared_memory[kMaxShared];

inline unsigned char* dynamic_shared() { return shared_memory; }

inline Fiber& self() { return launch_state->fibers[launch_state->current]; }

inline int linear_thread() {
    return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

// Back to the scheduler; it resumes this fiber later with its built-ins restored. A failed launch never
// resumes it.
inline void yield() {
    if (_setjmp(self().resume) == 0) {
        _longjmp(launch_state->scheduler, 1);
    }
}

[[noreturn]] inline void fail(const std::string& message) {
    Launch& s = *launch_state;
    if (!s.failed) {
        char where[160];
        std::snprintf(where, sizeof where, " (block %u,%u,%u thread %u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z,
                      threadIdx.x, threadIdx.y, threadIdx.z);
        s.failed = true;
        s.error = message + where;
    }
    for (;;) {
        yield();
    }
}

inline void block_barrier() {
    Launch& s = *launch_state;
    const unsigned long long generation = s.block_generation;
    ++s.progress;
    if (++s.block_arrived == s.live) {
        s.block_arrived = 0;
        ++s.block_generation;
        return;
    }
    while (generation == s.block_generation) {
        yield();
    }
    ++s.progress;
}

// Every lane of this thread's warp arrives at `operation` with `values`; returns once all 32 have.
inline WarpExchange& warp_arrive(const char* operation, const unsigned int* values, int count) {
    Launch& s = *launch_state;
    const int thread = linear_thread();
    WarpExchange& warp = s.warps[thread / 32];
    for (int lane = thread / 32 * 32; lane < thread / 32 * 32 + 32; ++lane) {
        if (s.fibers[lane].done) {
            fail(std::string(operation) + " in a warp where a lane has exited");
        }
    }
    if (warp.arrived == 0) {
        warp.operation = operation;
    } else if (std::strcmp(warp.operation, operation) != 0) {
        fail(std::string("diverged warp: one lane at ") + operation + ", another at " + warp.operation);
    }
    std::copy(values, values + count, warp.values[thread % 32].begin());
    const unsigned long long generation = warp.generation;
    ++s.progress;
    if (++warp.arrived == 32) {
        warp.arrived = 0;
        ++warp.generation;
        return warp;
    }
    while (generation == warp.generation) {
        yield();
    }
    ++s.progress;
    return warp;
}

// The second half of a warp exchange: nobody overwrites the values before every lane has read them.
inline void warp_leave(const char* operation) {
    const unsigned int none[1] = {0};
    warp_arrive(operation, none, 0);
}

inline void check_copy(const Copy& copy) {
    Launch& s = *launch_state;
    const uintptr_t target = (uintptr_t)copy.target;
    if (target < (uintptr_t)shared_memory || target + copy.bytes > (uintptr_t)shared_memory + s.shared_bytes ||
        target % copy.bytes != 0) {
        fail("cp.async target outside the dynamic shared memory, or misaligned");
    }
    if (!copy.valid) {
        return;
    }
    const uintptr_t source = (uintptr_t)copy.source;
    if (source % copy.bytes != 0) {
        fail("cp.async source misaligned");
    }
    for (const auto& region : s.regions) {
        if (source >= region.first && source + copy.bytes <= region.second) {
            return;
        }
    }
    fail("cp.async source outside every buffer of the launch");
}

inline void perform(const Copy& copy) {
    if (copy.valid) {
        std::memcpy(copy.target, copy.source, copy.bytes);
    } else {
        std::memset(copy.target, 0, copy.bytes);
    }
}

inline void copy_async(void* target, const void* source, int bytes, bool valid) {
    const Copy copy{target, source, bytes, valid};
    check_copy(copy);
    if (launch_state->late_copies) {
        self().pending.push_back(copy);
    } else {
        perform(copy);
    }
}

inline void copy_commit() {
    Fiber& f = self();
    f.committed.push_back(std::move(f.pending));
    f.pending.clear();
}

inline void copy_wait(int pending_groups) {
    Fiber& f = self();
    while ((int)f.committed.size() > pending_groups) {
        for (const Copy& copy : f.committed.front()) {
            perform(copy);
        }
        f.committed.pop_front();
    }
}

// ---- fp16 and bf16 ----

inline float half_to_float(unsigned short bits) {
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    return (float)h;
}

inline unsigned short float_to_half(double value) {  // round to nearest even, once
    const _Float16 h = (_Float16)value;
    unsigned short bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}

inline float bf16_to_float(unsigned short bits) { return __uint_as_float((unsigned int)bits << 16); }

inline unsigned short float_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (unsigned short)((u >> 16) | 0x40u);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

inline float element_to_float(unsigned short bits) {
#if DK_BF16
    return bf16_to_float(bits);
#else
    return half_to_float(bits);
#endif
}

inline unsigned short element_from_double(double value) {
#if DK_BF16
    return float_to_bf16((float)value);  // fma results here are exact in fp32 or far from a tie
#else
    return float_to_half(value);
#endif
}

// ---- launching ----

[[noreturn]] inline void fiber_entry() {
    Launch& s = *launch_state;
    s.body(s.body_argument);
    Fiber& f = self();
    copy_wait(0);
    for (const Copy& copy : f.pending) {
        perform(copy);
    }
    f.done = true;
    --s.live;
    ++s.progress;
    if (s.block_arrived > 0) {
        fail("a thread exited while others wait at __syncthreads");
    }
    const WarpExchange& warp = s.warps[linear_thread() / 32];
    if (warp.arrived > 0) {
        fail(std::string("a thread exited while its warp waits at ") + warp.operation);
    }
    _longjmp(s.scheduler, 1);  // the fiber's stack is dropped; it is set up afresh for the next block
}

// Runs every thread of the current block to completion; false (with s.error) on a failure or deadlock.
inline bool run_block(Launch& s, dk_emu_dim3 block) {
    const int threads = (int)(block.x * block.y * block.z);
    for (int i = 0; i < threads; ++i) {
        Fiber& f = s.fibers[i];
        f.done = false;
        f.index = {(unsigned int)i % block.x, (unsigned int)i / block.x % block.y, (unsigned int)i / (block.x * block.y)};
        f.pending.clear();
        f.committed.clear();
        f.started = false;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.data();
        f.context.uc_stack.ss_size = f.stack.size();
        f.context.uc_link = nullptr;  // fiber_entry never returns
        makecontext(&f.context, fiber_entry, 0);
    }
    for (WarpExchange& warp : s.warps) {
        warp.arrived = 0;
    }
    s.live = threads;
    s.block_arrived = 0;
    std::memset(shared_memory, 0xff, sizeof shared_memory);  // NaN in fp16, bf16 and fp32
    while (s.live > 0 && !s.failed) {
        const unsigned long long before = s.progress;
        for (int k = 0; k < threads && !s.failed; ++k) {
            const int i = s.reverse ? threads - 1 - k : k;
            if (s.fibers[i].done) {
                continue;
            }
            s.current = i;
            threadIdx = s.fibers[i].index;
            Fiber& f = s.fibers[i];
            if (_setjmp(s.scheduler) == 0) {  // back here when the fiber yields or finishes
                if (!f.started) {
                    f.started = true;
                    setcontext(&f.context);
                }
                _longjmp(f.resume, 1);
            }
        }
        if (!s.failed && s.live > 0 && s.progress == before) {
            s.failed = true;
            s.error = "deadlock: every live thread waits at a barrier that cannot complete";
        }
    }
    return !s.failed;
}

template <typename T>
T argument(unsigned long long raw) {
    if constexpr (std::is_same_v<T, float>) {
        return __uint_as_float((unsigned int)raw);
    } else {
        return (T)raw;
    }
}

template <typename... P, size_t... I>
void call(void (*kernel)(P...), const unsigned long long* raw, std::index_sequence<I...>) {
    kernel(argument<P>(raw[I])...);
}

template <typename... P>
struct Call {
    void (*kernel)(P...);
    const unsigned long long* raw;
    static void run(void* self) {
        Call* c = (Call*)self;
        call(c->kernel, c->raw, std::index_sequence_for<P...>{});
    }
};

// dims: grid x, y, z then block x, y, z. flags: 1 late copies, 2 reverse thread order, 4 reverse block
// order. regions: begin, end pairs. Returns 0, or 1 with the message in `error`.
template <typename... P>
int launch(void (*kernel)(P...), const unsigned int* dims, unsigned long long shared_bytes,
           const unsigned long long* raw, int count, int flags, const unsigned long long* regions, int region_count,
           char* error, int error_size) {
    Launch s;
    auto report = [&](const std::string& message) {
        std::snprintf(error, error_size, "%s", message.c_str());
        return 1;
    };
    if (count != (int)sizeof...(P)) {
        return report("the kernel takes " + std::to_string(sizeof...(P)) + " arguments, got " + std::to_string(count));
    }
    const dk_emu_dim3 grid{dims[0], dims[1], dims[2]};
    const dk_emu_dim3 block{dims[3], dims[4], dims[5]};
    const unsigned int threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || threads % 32 != 0) {
        return report("blocks must have a multiple of 32 threads, at most 1024");
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        return report("grid dimensions out of range");
    }
    if (shared_bytes > (unsigned long long)kMaxShared) {
        return report("more dynamic shared memory than a block can have");
    }
    s.late_copies = flags & 1;
    s.reverse = flags & 2;
    s.reverse_blocks = flags & 4;
    s.shared_bytes = shared_bytes;
    for (int i = 0; i < region_count; ++i) {
        s.regions.emplace_back(regions[2 * i], regions[2 * i + 1]);
    }
    s.fibers.resize(threads);
    for (Fiber& f : s.fibers) {
        f.stack.resize(kStackBytes);
    }
    s.warps.resize(threads / 32);
    Call<P...> c{kernel, raw};
    s.body = &Call<P...>::run;
    s.body_argument = &c;
    launch_state = &s;
    blockDim = block;
    gridDim = grid;
    for (unsigned int z = 0; z < grid.z; ++z) {
        for (unsigned int y = 0; y < grid.y; ++y) {
            for (unsigned int x = 0; x < grid.x; ++x) {
                blockIdx = s.reverse_blocks ? dk_emu_dim3{grid.x - 1 - x, grid.y - 1 - y, grid.z - 1 - z}
                                            : dk_emu_dim3{x, y, z};
                if (!run_block(s, block)) {
                    launch_state = nullptr;
                    return report(s.error);
                }
            }
        }
    }
    launch_state = nullptr;
    return 0;
}

}  // namespace dk_emu

inline void __syncthreads() { dk_emu::block_barrier(); }
// One block runs at a time and its threads switch only at barriers: atomics and fences are plain.
inline void __threadfence() {}
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
    const unsigned int old = *address;
    *address = old + value;
    return old;
}
inline int atomicAdd(int* address, int value) {
    const int old = *address;
    *address = old + value;
    return old;
}
template <typename T>
T __ldcg(const T* address) {
    return *address;
}

template <typename T>
T __shfl_sync(unsigned int mask, T value, int source_lane) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    if (mask != 0xffffffffu) {
        dk_emu::fail("shuffles with a partial mask are not emulated");
    }
    unsigned int bits;
    std::memcpy(&bits, &value, 4);
    dk_emu::WarpExchange& warp = dk_emu::warp_arrive("shfl", &bits, 1);
    bits = warp.values[source_lane & 31][0];
    dk_emu::warp_leave("shfl");
    T result;
    std::memcpy(&result, &bits, 4);
    return result;
}

template <typename T>
T __shfl_xor_sync(unsigned int mask, T value, int lane_mask) {
    return __shfl_sync(mask, value, (dk_emu::linear_thread() % 32) ^ lane_mask);
}

// ---- the kernels' PTX helpers ----

inline float dk_half_to_float(unsigned short x) { return dk_emu::half_to_float(x); }
inline unsigned short dk_float_to_half(float f) { return dk_emu::float_to_half(f); }

inline unsigned int dk_lop3(unsigned int a, unsigned int b, unsigned int c, unsigned int table) {
    unsigned int d = 0;
    for (int bit = 0; bit < 32; ++bit) {
        const unsigned int index = (((a >> bit) & 1u) << 2) | (((b >> bit) & 1u) << 1) | ((c >> bit) & 1u);
        d |= ((table >> index) & 1u) << bit;
    }
    return d;
}

inline unsigned int dk_lop3_and_or(unsigned int a, unsigned int b, unsigned int c) { return dk_lop3(a, b, c, 0xEA); }

inline unsigned int dk_prmt(unsigned int a, unsigned int b, unsigned int selector) {
    const unsigned long long bytes = ((unsigned long long)b << 32) | a;
    unsigned int d = 0;
    for (int i = 0; i < 4; ++i) {
        const unsigned int s = (selector >> (4 * i)) & 0xfu;
        unsigned int byte = (unsigned int)(bytes >> (8 * (s & 7u))) & 0xffu;
        if (s & 8u) {
            byte = (byte & 0x80u) ? 0xffu : 0u;  // sign replication
        }
        d |= byte << (8 * i);
    }
    return d;
}

inline unsigned int dk_fma2(unsigned int pair, unsigned int mul2, unsigned int add2) {
    unsigned int d = 0;
    for (int h = 0; h < 2; ++h) {
        const double a = dk_emu::element_to_float((unsigned short)(pair >> (16 * h)));
        const double b = dk_emu::element_to_float((unsigned short)(mul2 >> (16 * h)));
        const double c = dk_emu::element_to_float((unsigned short)(add2 >> (16 * h)));
        d |= (unsigned int)dk_emu::element_from_double(a * b + c) << (16 * h);
    }
    return d;
}

inline unsigned int dk_pack_bf16x2(float high, float low) {
    return ((unsigned int)dk_emu::float_to_bf16(high) << 16) | dk_emu::float_to_bf16(low);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: lane = 4 g + t holds
//   A: a0 = (row g, k 2t, 2t+1), a1 = (row g+8, k 2t, 2t+1), a2 = (row g, k 2t+8, 2t+9), a3 = (row g+8, k 2t+8, 2t+9)
//   B: b0 = (k 2t, 2t+1, col g), b1 = (k 2t+8, 2t+9, col g)
//   C, D: c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, cols 2t, 2t+1)
// (lower half of each register = lower k). The products are summed in double and rounded to fp32 once.
inline void dk_mma(float c[4], unsigned int a0, unsigned int a1, unsigned int a2, unsigned int a3, unsigned int b0,
                   unsigned int b1) {
    unsigned int mine[10] = {a0, a1, a2, a3, b0, b1};
    std::memcpy(mine + 6, c, 16);
    dk_emu::WarpExchange& warp = dk_emu::warp_arrive("mma", mine, 10);
    if (warp.computed != warp.generation) {  // the first lane past the barrier computes every lane's D
        float a[16][16], b[16][8], acc[16][8];
        for (int lane = 0; lane < 32; ++lane) {
            const int g = lane / 4, t = lane % 4;
            const auto& v = warp.values[lane];
            for (int half = 0; half < 2; ++half) {
                const int k = 2 * t + half;
                auto element = [&](unsigned int word) {
                    return dk_emu::element_to_float((unsigned short)(word >> (16 * half)));
                };
                a[g][k] = element(v[0]);
                a[g + 8][k] = element(v[1]);
                a[g][k + 8] = element(v[2]);
                a[g + 8][k + 8] = element(v[3]);
                b[k][g] = element(v[4]);
                b[k + 8][g] = element(v[5]);
            }
            for (int i = 0; i < 4; ++i) {
                std::memcpy(&acc[g + 8 * (i / 2)][2 * t + i % 2], &v[6 + i], 4);
            }
        }
        for (int lane = 0; lane < 32; ++lane) {
            const int g = lane / 4, t = lane % 4;
            for (int i = 0; i < 4; ++i) {
                const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
                double sum = acc[row][col];
                for (int k = 0; k < 16; ++k) {
                    sum += (double)a[row][k] * (double)b[k][col];
                }
                warp.results[lane][i] = (float)sum;
            }
        }
        warp.computed = warp.generation;
    }
    std::memcpy(c, warp.results[dk_emu::linear_thread() % 32].data(), 16);
    dk_emu::warp_leave("mma");
}

// Shared-memory addresses are offsets into the dynamic shared memory (the only memory cp.async targets).
inline unsigned int dk_shared_address(const void* p) {
    return (unsigned int)((const unsigned char*)p - dk_emu::shared_memory);
}
inline void dk_copy16_async(unsigned int shared, const void* global, bool valid) {
    dk_emu::copy_async(dk_emu::shared_memory + shared, global, 16, valid);
}
inline void dk_copy_commit() { dk_emu::copy_commit(); }
template <int PENDING>
inline void dk_copy_wait() {
    dk_emu::copy_wait(PENDING);
}
