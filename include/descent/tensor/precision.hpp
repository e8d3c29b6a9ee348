#pragma once
// Mixed precision (model.dtype = "bf16"): the matrix products of the dense layers take their
// inputs rounded to bfloat16 and accumulate and return float32; parameters, gradients,
// optimizer state, the loss and every elementwise operation stay float32.
//
// A process-wide setting, like kernels::set_gemm_backend: `descent train` turns it on for a
// bf16 run (precision::Scope) and back off at the end. Only float32 products of
// autodiff::linear take it (forward and backward; the tangent rules of the Hessian-vector
// products stay float32). Products run as oneDNN matmuls with bf16 inputs where the CPU has
// AVX512-BF16 or AMX-BF16; emulated (inputs rounded to bf16, the product in float32) where it
// has not and the user asked for emulation, and in deterministic mode (the float32 product
// is then the tiled, thread-count-independent one).
#include <cstdint>
#include <string>

namespace descent::precision {

enum class Products { fp32, bf16 };

void set_products(Products p);
Products products();

// bf16 products computed as float32 products of bf16-rounded inputs instead of oneDNN's bf16
// matmul (same values up to the order of the float32 sums).
void set_emulate(bool on);
bool emulate();

// Whether the CPU runs bf16 matrix products natively: oneDNN's effective ISA includes
// avx512_core_bf16 (AVX512-BF16; AMX-BF16 CPUs include it). False without oneDNN. The test
// hook DESCENT_BF16_CPU=none (environment) makes it false.
bool cpu_has_bf16();
// The ISA oneDNN runs on, for messages ("avx512_core_bf16", "avx2", ...).
std::string cpu_isa_name();

// Sets the products (and emulation) for its lifetime; restores the previous ones after.
class Scope {
 public:
  Scope(Products p, bool emulate);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Products old_products_;
  bool old_emulate_;
};

}  // namespace descent::precision
