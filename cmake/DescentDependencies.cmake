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
