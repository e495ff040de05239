# cmake --install: the public headers, the libraries (one static library per
# layer, all needed by broach::broach), the broach CLI and a CMake package, so
# that a user's project does find_package(broach) and links broach::broach.
# `make package` builds a Debian package of the same with CPack.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(BROACH_LIBS broach broach_base broach_exec broach_config broach_wire broach_transport
  broach_reliable broach_membership broach_routing broach_breaker)
install(TARGETS ${BROACH_LIBS} EXPORT broachTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/broach DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET broach_cli)
  install(TARGETS broach_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT broachTargets NAMESPACE broach:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/broach)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/broachConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/broachConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/broach)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/broachConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/broachConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/broachConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/broach)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/README.md
  DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/broach)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME broach)
set(CPACK_PACKAGE_VENDOR "BroachRpc")
set(CPACK_PACKAGE_CONTACT "BroachRpc <broach@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "BroachRpc: a registry-free RPC framework over UDP (library, headers, CLI, Python package)")
# The Python extension module is built for Debian 12's python3 (3.11).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3 (>= 3.11), python3 (<< 3.12)")
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libspdlog-dev, libfmt-dev, nlohmann-json3-dev, libmsgpack-cxx-dev, libcpp-httplib-dev, libsodium-dev, pkg-config, cmake, g++")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
include(CPack)
