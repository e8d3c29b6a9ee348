#pragma once
// DESCENT_DISPATCH marks a hot vector loop for run-time dispatch on the CPU.
//
// The library is built for the baseline x86-64 (SSE2), so that one build (the installed
// package, the command-line tool) runs on any x86-64 CPU. A function marked
// DESCENT_DISPATCH is compiled three times, for the baseline, for x86-64-v3 (AVX2, FMA)
// and for x86-64-v4 (AVX-512), and the loader picks the best version for the CPU once,
// at start-up (GCC's target_clones: an ifunc, so each call is one indirect call). OpenBLAS
// and oneDNN choose their own kernels for the CPU the same way.
//
// Put it on a function whose body is the loop (a loop inside a lambda handed to
// parallel_for runs in the outlined OpenMP function, which is not cloned: have the lambda
// call a marked function per chunk). What the loop calls inline (vmath.hpp) is compiled
// into each version.
//
// A build for one CPU (DESCENT_NATIVE=ON, -march=native, where AVX2 is already on) and
// other compilers get each function once, as written. Results: the v3/v4 versions may fuse
// a * b + c into one FMA instruction, as a -march=native build does, so the last bit of an
// elementwise result can differ between CPUs (never between runs on one CPU).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#define DESCENT_DISPATCH __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define DESCENT_DISPATCH
#endif
