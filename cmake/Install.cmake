# Installs the libraries, their headers and a package config with one
# component per target: a host that links only the core finds only the core's
# dependencies (see cmake/exportengineConfig.cmake.in).
include(CMakePackageConfigHelpers)

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/exportengine)

# One export set per component, so the package config can load each one
# only when its own dependencies are there.
function(exportengine_install_component component target)
  install(TARGETS ${target} EXPORT exportengine-${component}-targets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT exportengine-${component}-targets
    NAMESPACE exportengine::
    DESTINATION ${config_dir})
endfunction()

exportengine_install_component(core exportengine)
exportengine_install_component(api exportengine_api)
# The HTTP server: a host with another HTTP stack never needs it.
if(TARGET exportengine_http)
  exportengine_install_component(http exportengine_http)
endif()
exportengine_install_component(memory_source exportengine_memory_source)
exportengine_install_component(filesystem_sink exportengine_filesystem_sink)
exportengine_install_component(hmac_url_signer exportengine_hmac_url_signer)
exportengine_install_component(sqlite_job_store exportengine_sqlite_job_store)
exportengine_install_component(sqlite_source exportengine_sqlite_source)
if(TARGET exportengine_postgres_job_store)
  exportengine_install_component(postgres_job_store exportengine_postgres_job_store)
  install(DIRECTORY adapters/postgres_job_store/include/exportengine DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endif()
# The conformance suites: installed wherever Catch2 v2 was found at build
# time; the package config loads them only where the host has Catch2 too.
if(TARGET exportengine_testing)
  exportengine_install_component(testing exportengine_testing)
endif()

# Public headers only: include/exportengine/detail/ holds the CSV writer's
# inline scans (csv_writer.hpp includes them); private headers live in
# src/include and are never installed.
install(DIRECTORY include/exportengine DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY adapters/memory_source/include/exportengine
                  adapters/filesystem_sink/include/exportengine
                  adapters/hmac_url_signer/include/exportengine
                  adapters/sqlite_job_store/include/exportengine
                  adapters/sqlite_source/include/exportengine
                  http/include/exportengine
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Static libraries carry their private dependencies into the host's link;
# shared ones do not. The config needs to know which it is.
if(BUILD_SHARED_LIBS)
  set(EXPORTENGINE_SHARED ON)
else()
  set(EXPORTENGINE_SHARED OFF)
endif()
configure_package_config_file(cmake/exportengineConfig.cmake.in
  ${PROJECT_BINARY_DIR}/exportengineConfig.cmake
  INSTALL_DESTINATION ${config_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/exportengineConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/exportengineConfig.cmake
  ${PROJECT_BINARY_DIR}/exportengineConfigVersion.cmake
  DESTINATION ${config_dir})
if(TARGET exportengine-cli)
  install(TARGETS exportengine-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
