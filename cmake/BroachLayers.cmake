# Layer boundaries that fail to compile when crossed. Each layer's static
# library exposes only its own headers (src/<layer>/*.hpp, included as
# "<layer>/x.hpp") to the targets that link it: its include root in the build
# tree holds a single symlink, <layer> -> src/<layer>. A layer therefore sees
# the headers of the layers it links (and what their headers need), never
# the others; tools/ and examples/ link broach::broach and see include/broach
# only. Tests, benchmarks and fuzz targets add src/ themselves (white-box).
function(broach_layer target layer)
  cmake_parse_arguments(L "PRIVATE" "" "" ${ARGN})
  set(root ${CMAKE_BINARY_DIR}/layers/${layer})
  file(MAKE_DIRECTORY ${root})
  file(CREATE_LINK ${PROJECT_SOURCE_DIR}/src/${layer} ${root}/${layer} SYMBOLIC)
  if(L_PRIVATE)
    target_include_directories(${target} PRIVATE ${root})
  else()
    target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${root}>)
  endif()
endfunction()
