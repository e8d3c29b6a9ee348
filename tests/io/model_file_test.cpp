// A model's parameters and buffers as a safetensors file: round trips in f32 and f64, F32 and
// F64 files converted to the arena's dtype, buffers required when the arena has them, and
// errors that name the file and the first tensor that differs and leave the arena unchanged.
#include "descent/io/model_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
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
  expect_data_error(path(), with,
                    "the weights do not match the model: buffer 'layers.1.running_mean' [3] of the model is not in the file");
}

TEST_F(ModelFileTest, BuffersTheModelDoesNotHaveAreRejected) {
  ParameterArena plain(DType::f64), with(DType::f64);
  declare(plain, false);
  declare(with);
  fill(with, 4.0);
  save_parameters(path(), with);
  expect_data_error(path(), plain,
                    "the weights do not match the model: the file holds 'layers.1.running_mean' [3], which the model lacks");
}

TEST_F(ModelFileTest, BufferOfTheWrongShapeOrDtype) {
  ParameterArena a(DType::f64), other(DType::f64);
  declare(a);
  other.add("layers.0.weight", {3, 2});
  other.add("layers.0.bias", {3});
  other.add("layers.1.weight", {3});
  other.add("layers.1.bias", {3});
  other.add_buffer("layers.1.running_mean", {3});
  other.add_buffer("layers.1.running_var", {4});
  other.freeze();
  save_parameters(path("wide.safetensors"), other);
  expect_data_error(path("wide.safetensors"), a, "buffer 'layers.1.running_var' is [4] in the file, [3] in the model");
  // Only F32 and F64 are read.
  const std::vector<std::byte> half(6 * 2);
  const TensorView f16{"layers.0.weight", "F16", {3, 2}, half};
  write_safetensors(path("half.safetensors"), std::span<const TensorView>(&f16, 1));
  ParameterArena one(DType::f32);
  one.add("layers.0.weight", {3, 2});
  one.freeze();
  expect_data_error(path("half.safetensors"), one, "parameter 'layers.0.weight' has dtype F16; descent reads F32 and F64");
}

// F32 weights load into an f64 model exactly; F64 weights into an f32 model round to nearest
// (both compared with the C++ conversions of the values written).
TEST_F(ModelFileTest, F32AndF64AreConvertedToTheModelsDtype) {
  ParameterArena narrow(DType::f32), wide(DType::f64);
  declare(narrow);
  declare(wide);
  for (std::int64_t i = 0; i < narrow.size(); ++i) narrow.values().data<float>()[i] = 0.1f + static_cast<float>(i) / 3.0f;
  for (std::int64_t i = 0; i < narrow.buffer_size(); ++i) narrow.buffers().data<float>()[i] = -1.0f / static_cast<float>(i + 7);
  save_parameters(path("narrow.safetensors"), narrow, {{"model", "narrow"}});
  EXPECT_EQ(load_parameters(path("narrow.safetensors"), wide).at("model"), "narrow");
  for (std::int64_t i = 0; i < wide.size(); ++i) {
    EXPECT_EQ(wide.values().data<double>()[i], static_cast<double>(narrow.values().data<float>()[i])) << i;
  }
  for (std::int64_t i = 0; i < wide.buffer_size(); ++i) {
    EXPECT_EQ(wide.buffers().data<double>()[i], static_cast<double>(narrow.buffers().data<float>()[i])) << i;
  }
  for (std::int64_t i = 0; i < wide.size(); ++i) wide.values().data<double>()[i] = 0.1 + static_cast<double>(i) / 3.0;
  save_parameters(path("wide.safetensors"), wide);
  load_parameters(path("wide.safetensors"), narrow);
  for (std::int64_t i = 0; i < narrow.size(); ++i) {
    const double v = 0.1 + static_cast<double>(i) / 3.0;
    EXPECT_EQ(narrow.values().data<float>()[i], static_cast<float>(v)) << i;
    EXPECT_NE(static_cast<double>(narrow.values().data<float>()[i]), v) << i;  // not representable: really rounded
  }
}

// Files that are not model weights: text, an empty file, a checkpoint, a missing file.
TEST_F(ModelFileTest, WhatIsNotModelWeightsIsSaidSo) {
  ParameterArena a(DType::f32);
  declare(a);
  {
    std::ofstream(path("config.toml")) << "name = \"run\"\nepochs = 3\n";
    std::ofstream(path("empty.safetensors"));
    std::ofstream(path("short.safetensors")) << "{}";
  }
  expect_data_error(path("config.toml"), a, "config.toml: not a safetensors file (its first 8 bytes");
  expect_data_error(path("empty.safetensors"), a, "empty.safetensors: not a safetensors file (0 bytes)");
  expect_data_error(path("short.safetensors"), a, "short.safetensors: not a safetensors file (2 bytes)");
  ParameterArena b(DType::f32);
  declare(b);
  save_parameters(path("step-000000000001.ckpt"), b, {{"format", "descent-checkpoint/1"}});
  expect_data_error(path("step-000000000001.ckpt"), a, "a descent checkpoint (the training state of a run), not model weights");
  EXPECT_THROW(load_parameters(path("missing.safetensors"), a), IoError);
  // A safetensors file cut short is still the reader's to describe (not "not a safetensors file").
  save_parameters(path("cut.safetensors"), b);
  fs::resize_file(path("cut.safetensors"), 20);
  try {
    load_parameters(path("cut.safetensors"), a);
    ADD_FAILURE() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()).find("not a safetensors file"), std::string::npos) << e.what();
  }
}

// The message names the model as the caller says, and ends with the file's own description.
TEST_F(ModelFileTest, MismatchNamesTheModelAndTheFilesModel) {
  ParameterArena small(DType::f32), a(DType::f32);
  small.add("layers.0.weight", {3, 5});
  small.freeze();
  declare(a);
  save_parameters(path(), small, {{"model", "Sequential(Linear(5 -> 3))"}});
  try {
    load_parameters(path(), a, {.model = "the model of this config (exp.toml)"});
    ADD_FAILURE() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), path().string() +
                                         ": the weights do not match the model of this config (exp.toml): parameter "
                                         "'layers.0.weight' is [3, 5] in the file, [3, 2] in the model; the file's "
                                         "model: Sequential(Linear(5 -> 3))");
  }
}

TEST_F(ModelFileTest, MissingParameterAndTruncatedFile) {
  ParameterArena a(DType::f32), b(DType::f32);
  a.add("layers.0.weight", {3, 2});
  a.freeze();
  declare(b);
  save_parameters(path(), a);
  expect_data_error(path(), b, "parameter 'layers.0.bias' [3] of the model is not in the file");
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
