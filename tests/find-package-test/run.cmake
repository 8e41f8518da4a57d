# Installs the build tree into a scratch prefix, then configures, builds and
# runs a separate consumer project against it with find_package().
# Inputs: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR, CXX_FLAGS, LINKER_FLAGS,
# and RUN: the programs to run, `|`-separated, each with its arguments
# separated by spaces (e.g. "consumer|host_server --self-test").
file(REMOVE_RECURSE "${WORK_DIR}")
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()
step(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
step(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
     "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
     "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}")
step(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
string(REPLACE "|" ";" programs "${RUN}")
foreach(program IN LISTS programs)
  separate_arguments(argv UNIX_COMMAND "${program}")
  list(POP_FRONT argv name)
  step("${WORK_DIR}/build/${name}" ${argv})
  message(STATUS "${name}: built against the installed package and ran")
endforeach()
