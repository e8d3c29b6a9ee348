// A model's parameters and buffers as a safetensors file: round trips in f32 and f64,
// buffers required when the arena has them, and errors that name the file and the tensor
// and leave the arena unchanged.
#include "descent/io/model_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "descent/error.hpp"
#include "descent/io/safetensors.hpp"

namespace descent::io {
namespace {

namespace fs = std::filesystem;

class ModelFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("descent_model_file_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path path(const std::string& name = "model.safetensors") const { return dir_ / name; }

  // A linear layer and a batch normalization's parameters and running statistics.
  static void declare(ParameterArena& arena, bool with_buffers = true) {
    arena.add("layers.0.weight", {3, 2});
    arena.add("layers.0.bias", {3});
    arena.add("layers.1.weight", {3}, {.role = ParamRole::scale});
    arena.add("layers.1.bias", {3}, {.role = ParamRole::shift});
    if (with_buffers) {
      arena.add_buffer("layers.1.running_mean", {3});
      arena.add_buffer("layers.1.running_var", {3}, 1.0);
    }
    arena.freeze();
  }
  static void fill(ParameterArena& arena, double offset) {
    for (std::int64_t i = 0; i < arena.size(); ++i) {
      dispatch_float(arena.dtype(), [&](auto zero) {
        arena.values().data<decltype(zero)>()[i] = static_cast<decltype(zero)>(offset + 0.5 * static_cast<double>(i));
      });
    }
    for (std::int64_t i = 0; i < arena.buffer_size(); ++i) {
      dispatch_float(arena.dtype(), [&](auto zero) {
        arena.buffers().data<decltype(zero)>()[i] = static_cast<decltype(zero)>(-offset - 0.25 * static_cast<double>(i));
      });
    }
  }
  static bool same_bytes(const Tensor& a, const Tensor& b) {
    return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
  }
  void expect_data_error(const fs::path& file, ParameterArena& arena, const std::string& part) {
    Tensor values = arena.values().clone();
    Tensor buffers = arena.buffers().clone();
    try {
      load_parameters(file, arena);
      ADD_FAILURE() << "no DataError";
    } catch (const DataError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file.string()), std::string::npos) << what;
      EXPECT_NE(what.find(part), std::string::npos) << what;
    }
    EXPECT_TRUE(same_bytes(values, arena.values())) << "the parameters changed";
    EXPECT_TRUE(same_bytes(buffers, arena.buffers())) << "the buffers changed";
  }

  fs::path dir_;
};

TEST_F(ModelFileTest, ParametersAndBuffersRoundTrip) {
  for (DType dtype : {DType::f32, DType::f64}) {
    ParameterArena a(dtype), b(dtype);
    declare(a);
    declare(b);
    fill(a, 1.0);
    save_parameters(path(), a, {{"model", "test"}});
    // The file holds the parameters, then the buffers, under their names.
    const Safetensors file = read_safetensors(path());
    ASSERT_EQ(file.tensors.size(), 6u);
    EXPECT_EQ(file.tensors[4].name, "layers.1.running_mean");
    EXPECT_EQ(file.tensors[5].name, "layers.1.running_var");
    EXPECT_EQ(file.tensors[5].shape, std::vector<std::int64_t>{3});
    EXPECT_EQ(file.tensors[5].dtype, dtype == DType::f64 ? "F64" : "F32");
    const auto meta = load_parameters(path(), b);
    EXPECT_EQ(meta.at("model"), "test");
    EXPECT_TRUE(same_bytes(a.values(), b.values()));
    EXPECT_TRUE(same_bytes(a.buffers(), b.buffers()));
    EXPECT_EQ(b.buffers().at(5), -1.0 - 0.25 * 5);
  }
}

TEST_F(ModelFileTest, ExplicitValuesAreSavedWithTheArenasBuffers) {
  ParameterArena a(DType::f64), b(DType::f64);
  declare(a);
  declare(b);
  fill(a, 2.0);
  Tensor other = Tensor::full({a.size()}, DType::f64, 9.0);
  save_parameters(path(), a, other);
  load_parameters(path(), b);
  EXPECT_TRUE(same_bytes(b.values(), other));
  EXPECT_TRUE(same_bytes(b.buffers(), a.buffers()));
}

TEST_F(ModelFileTest, AModelWithBuffersRequiresThem) {
  ParameterArena plain(DType::f64), with(DType::f64);
  declare(plain, false);
  declare(with);
  fill(plain, 3.0);
  fill(with, 4.0);
  save_parameters(path(), plain);
  expect_data_error(path(), with, "buffer 'layers.1.running_mean' is missing");
}

TEST_F(ModelFileTest, BuffersTheModelDoesNotHaveAreRejected) {
  ParameterArena plain(DType::f64), with(DType::f64);
  declare(plain, false);
  declare(with);
  fill(with, 4.0);
  save_parameters(path(), with);
  expect_data_error(path(), plain, "tensor 'layers.1.running_mean' is neither a parameter nor a buffer of this model");
}

TEST_F(ModelFileTest, BufferOfTheWrongShapeOrDtype) {
  ParameterArena a(DType::f64), other(DType::f64), narrow(DType::f32);
  declare(a);
  other.add("layers.0.weight", {3, 2});
  other.add("layers.0.bias", {3});
  other.add("layers.1.weight", {3});
  other.add("layers.1.bias", {3});
  other.add_buffer("layers.1.running_mean", {3});
  other.add_buffer("layers.1.running_var", {4});
  other.freeze();
  save_parameters(path("wide.safetensors"), other);
  expect_data_error(path("wide.safetensors"), a, "buffer 'layers.1.running_var' has shape [4], the model expects [3]");
  declare(narrow);
  save_parameters(path("narrow.safetensors"), narrow);
  expect_data_error(path("narrow.safetensors"), a, "parameter 'layers.0.weight' has dtype F32, the model expects F64");
}

TEST_F(ModelFileTest, MissingParameterAndTruncatedFile) {
  ParameterArena a(DType::f32), b(DType::f32);
  a.add("layers.0.weight", {3, 2});
  a.freeze();
  declare(b);
  save_parameters(path(), a);
  expect_data_error(path(), b, "parameter 'layers.0.bias' is missing");
  // A file cut inside the buffers' data is rejected before anything is copied.
  ParameterArena full(DType::f32);
  declare(full);
  fill(full, 5.0);
  save_parameters(path("full.safetensors"), full);
  fs::resize_file(path("full.safetensors"), fs::file_size(path("full.safetensors")) - 4);
  expect_data_error(path("full.safetensors"), b, "");
}

}  // namespace
}  // namespace descent::io
