# `cmake --install build --prefix P`: libvarps.a and libvarps_bench.a, their
# public headers (include/varps), the varps program, and the CMake package
# (find_package(varps) gives varps::varps and varps::bench;
# examples/consumer uses it, scripts/check-consumer.sh tests it).
include(CMakePackageConfigHelpers)

set(VARPS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/varps)

# The benchmark library's headers go with it; the engine's headers include
# none of them.
set(VARPS_BENCH_PUBLIC_HEADERS ${PROJECT_SOURCE_DIR}/include/varps/bench.hpp
                               ${PROJECT_SOURCE_DIR}/include/varps/bench_runner.hpp
                               ${PROJECT_SOURCE_DIR}/include/varps/parscale_compare.hpp
                               ${PROJECT_SOURCE_DIR}/include/varps/precision_error.hpp)
file(GLOB VARPS_PUBLIC_HEADERS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/include/varps/*.hpp)
list(REMOVE_ITEM VARPS_PUBLIC_HEADERS ${VARPS_BENCH_PUBLIC_HEADERS})

install(TARGETS varps varps_bench EXPORT varpsTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${VARPS_PUBLIC_HEADERS} ${VARPS_BENCH_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/varps)
install(TARGETS varps_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The trained built-in models (find_builtin_model looks here first).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/models/ DESTINATION ${CMAKE_INSTALL_DATADIR}/varps/models
        FILES_MATCHING PATTERN "*.pth" PATTERN "*.json" PATTERN "*.safetensors" PATTERN "*.md")
install(EXPORT varpsTargets NAMESPACE varps:: FILE varpsTargets.cmake DESTINATION ${VARPS_INSTALL_CMAKEDIR})

# The toolkit the CUDA backend was built against, the config's default.
set(VARPS_CUDA_TOOLKIT_ROOT "")
if(VARPS_BUILD_CUDA)
  get_filename_component(VARPS_CUDA_TOOLKIT_ROOT "${CUDAToolkit_BIN_DIR}" DIRECTORY)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/varpsConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/varpsConfig.cmake INSTALL_DESTINATION ${VARPS_INSTALL_CMAKEDIR})
# 0.x: a new minor version may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/varpsConfigVersion.cmake VERSION ${PROJECT_VERSION}
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/varpsConfig.cmake ${PROJECT_BINARY_DIR}/varpsConfigVersion.cmake
        DESTINATION ${VARPS_INSTALL_CMAKEDIR})
