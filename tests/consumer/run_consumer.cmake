# Installs the built tree into a scratch prefix, then configures, builds and runs
# tests/consumer against it with find_package(descent).
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()
# The exported target must be relocatable and complete: no path of the building machine
# (only imported targets that descentConfig.cmake finds again), no empty $<LINK_ONLY:>
# entry, the include folder once.
file(GLOB targets_file ${WORK_DIR}/prefix/lib*/cmake/descent/descentTargets.cmake)
file(READ "${targets_file}" targets)
string(REGEX MATCH "INTERFACE_LINK_LIBRARIES \"[^\"]*\"" link_interface "${targets}")
string(REGEX MATCH "INTERFACE_INCLUDE_DIRECTORIES \"[^\"]*\"" include_dirs "${targets}")
if(link_interface MATCHES "/" OR link_interface MATCHES "LINK_ONLY:>" OR NOT link_interface MATCHES "tomlplusplus")
  message(FATAL_ERROR "descentTargets.cmake: bad link interface: ${link_interface}")
endif()
if(NOT include_dirs STREQUAL "INTERFACE_INCLUDE_DIRECTORIES \"\${_IMPORT_PREFIX}/include\"")
  message(FATAL_ERROR "descentTargets.cmake: include folders: ${include_dirs}")
endif()
# Portable: nothing beyond the baseline x86-64 outside the run-time dispatched clones (a
# build with -DDESCENT_NATIVE=ON is for its own CPU only and skips this).
file(GLOB library ${WORK_DIR}/prefix/lib*/libdescent.a)
if(NOT NATIVE AND CMAKE_HOST_SYSTEM_PROCESSOR MATCHES "x86_64")
  execute_process(COMMAND ${SOURCE_DIR}/tests/consumer/check_portable.sh ${library} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "the installed libdescent.a is not portable (see above)")
  endif()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build -G ${GENERATOR}
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer ${WORK_DIR}/run RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer failed: ${rc}")
endif()
