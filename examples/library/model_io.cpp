// Build a model, save its parameters, load them into a second copy of the model.
// Built and run by ctest (example.library.model_io); docs/library.md quotes it.
#include <cstdio>
#include <exception>
#include <filesystem>

#include <descent/io/model_file.hpp>
#include <descent/nn/initialize.hpp>
#include <descent/nn/module.hpp>

int run(int argc, char** argv) {
  const std::filesystem::path path = argc > 1 ? argv[1] : "example-model.safetensors";
  // [build]
  descent::ParameterArena arena(descent::DType::f32);
  descent::nn::Sequential net = descent::nn::mlp(arena, {784, 100, 10}, descent::nn::Activation::tanh);
  descent::nn::initialize(arena, {.weights = descent::init::Scheme::glorot_uniform, .seed = 7});
  // [build]
  // [save]
  descent::io::save_parameters(path, arena, {{"model", "mlp 784-100-10 tanh"}});
  // [save]
  // [load]
  descent::ParameterArena loaded(descent::DType::f32);
  descent::nn::Sequential copy = descent::nn::mlp(loaded, {784, 100, 10}, descent::nn::Activation::tanh);
  auto metadata = descent::io::load_parameters(path, loaded);  // every name and shape must match
  // [load]
  bool same = loaded.size() == arena.size();
  for (std::int64_t i = 0; same && i < arena.size(); ++i) same = loaded.values().at(i) == arena.values().at(i);
  std::printf("%s: %lld parameters, model = \"%s\", loaded %s\n", path.string().c_str(),
              static_cast<long long>(arena.size()), metadata["model"].c_str(), same ? "identical" : "DIFFERENT");
  return same ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // descent::Error: one line naming the file
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
