# Every dependency is a Debian package; scripts/install-deps installs the missing ones.
find_package(OpenMP REQUIRED)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(tomlplusplus 3 REQUIRED)
if(DESCENT_BUILD_APPS)
  find_package(CLI11 REQUIRED)
endif()

# OpenBLAS, the OpenMP build (libopenblas-openmp-dev): it runs on libgomp, the same thread
# pool as our own OpenMP loops, so the two never oversubscribe the cores.
find_path(DESCENT_CBLAS_INCLUDE_DIR cblas.h
  PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp /usr/include/openblas
  NO_DEFAULT_PATH)
find_path(DESCENT_CBLAS_INCLUDE_DIR cblas.h)
find_library(DESCENT_BLAS_LIBRARY NAMES openblas
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
find_library(DESCENT_BLAS_LIBRARY NAMES openblas)
if(NOT DESCENT_CBLAS_INCLUDE_DIR OR NOT DESCENT_BLAS_LIBRARY)
  message(FATAL_ERROR "OpenBLAS not found: install libopenblas-openmp-dev (scripts/install-deps does)")
endif()
message(STATUS "descent: BLAS ${DESCENT_BLAS_LIBRARY}, cblas.h in ${DESCENT_CBLAS_INCLUDE_DIR}")

# oneDNN (libdnnl-dev): its direct AVX-512/AVX2 convolutions, chosen at run time for the CPU,
# run the float32 convolutions (src/autodiff/conv_dnnl.cpp); without it descent uses its own
# im2col + sgemm path for every convolution.
find_path(DESCENT_DNNL_INCLUDE_DIR dnnl.hpp)
find_library(DESCENT_DNNL_LIBRARY NAMES dnnl)
if(DESCENT_DNNL_INCLUDE_DIR AND DESCENT_DNNL_LIBRARY)
  set(DESCENT_HAVE_DNNL ON)
  message(STATUS "descent: oneDNN ${DESCENT_DNNL_LIBRARY}")
else()
  set(DESCENT_HAVE_DNNL OFF)
  message(STATUS "descent: oneDNN not found (libdnnl-dev): convolutions use im2col + sgemm only")
endif()
