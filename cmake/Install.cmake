include(CMakePackageConfigHelpers)

install(TARGETS exportengine exportengine_api exportengine_memory_source exportengine_filesystem_sink
  exportengine_hmac_url_signer exportengine_sqlite_job_store exportengine_sqlite_source
  EXPORT exportengineTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The HTTP server (exportengine::http) is a component of its own
# (find_package(exportengine COMPONENTS http)): a host with another HTTP
# stack never needs it.
install(TARGETS exportengine_http EXPORT exportengineHttpTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The conformance suites go in an export set of their own, loaded by the
# package config only where Catch2 is found: a host without Catch2 still
# finds the package.
if(TARGET exportengine_testing)
  install(TARGETS exportengine_testing EXPORT exportengineTestingTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
install(DIRECTORY include/exportengine DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY adapters/memory_source/include/exportengine
                  adapters/filesystem_sink/include/exportengine
                  adapters/hmac_url_signer/include/exportengine
                  adapters/sqlite_job_store/include/exportengine
                  adapters/sqlite_source/include/exportengine
                  http/include/exportengine
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/exportengine)
install(EXPORT exportengineTargets
  NAMESPACE exportengine::
  DESTINATION ${config_dir})
install(EXPORT exportengineHttpTargets
  NAMESPACE exportengine::
  DESTINATION ${config_dir})
if(TARGET exportengine_testing)
  install(EXPORT exportengineTestingTargets
    NAMESPACE exportengine::
    DESTINATION ${config_dir})
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
