# Warning flags for every target of the project (not for users of the library).
add_library(broach_warnings INTERFACE)
target_compile_options(broach_warnings INTERFACE -Wall -Wextra -Wpedantic
  $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> $<$<CXX_COMPILER_ID:Clang>:-Wshadow>
  -Wnon-virtual-dtor -Wcast-align -Woverloaded-virtual)
