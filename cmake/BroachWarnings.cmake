# Warning flags for every target of the project (not for users of the library).
add_library(broach_warnings INTERFACE)
target_compile_options(broach_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow=local
  -Wnon-virtual-dtor -Wcast-align -Woverloaded-virtual)
