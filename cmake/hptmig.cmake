# SPDX-License-Identifier: MIT
# Helpers shared by the layer, test and fuzz CMakeLists files.

# hptmig_layer(NAME SOURCES ... DEPS ...): a layer library hptmig_<NAME>.
# The objects also go into the combined libhptmig.
function(hptmig_layer name)
  cmake_parse_arguments(L "" "" "SOURCES;DEPS" ${ARGN})
  add_library(hptmig_${name}_obj OBJECT ${L_SOURCES})
  target_include_directories(hptmig_${name}_obj PUBLIC
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(hptmig_${name}_obj PUBLIC ${L_DEPS})
  add_library(hptmig_${name} STATIC $<TARGET_OBJECTS:hptmig_${name}_obj>)
  target_link_libraries(hptmig_${name} PUBLIC hptmig_${name}_obj)
  set_property(GLOBAL APPEND PROPERTY HPTMIG_LAYERS ${name})
endfunction()

# The combined library, static and shared, from every layer's objects.
function(hptmig_finish_library)
  get_property(layers GLOBAL PROPERTY HPTMIG_LAYERS)
  set(objs)
  set(libs)
  foreach(l ${layers})
    list(APPEND objs $<TARGET_OBJECTS:hptmig_${l}_obj>)
  endforeach()
  set(deps OpenSSL::Crypto PkgConfig::JANSSON PkgConfig::ZSTD PkgConfig::GNUTLS Threads::Threads m)
  add_library(hptmig_shared SHARED ${objs})
  set_target_properties(hptmig_shared PROPERTIES OUTPUT_NAME hptmig
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
  target_link_libraries(hptmig_shared PRIVATE ${deps})
  add_library(hptmig_static STATIC ${objs})
  set_target_properties(hptmig_static PROPERTIES OUTPUT_NAME hptmig)
  target_include_directories(hptmig_static PUBLIC ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(hptmig_static PUBLIC ${deps})
  install(TARGETS hptmig_shared hptmig_static
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
endfunction()

# hptmig_test(NAME SOURCES ... LIBS ... [LABELS ...] [TIMEOUT s]): a cmocka
# test program registered with CTest. Label "concurrency" puts it in the
# thread-sanitizer run as well; "slow" keeps it out of sanitizer runs.
function(hptmig_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "HPTMIG_SOURCE_DIR=${CMAKE_SOURCE_DIR};HPTMIG_SHARED_DIR=${HPTMIG_SHARED_DIR};HPTMIG_BINARY_DIR=${CMAKE_BINARY_DIR}")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()
