// Internal header. Keeps glibc's allocator from handing large buffers back
// to the kernel after every message.
//
// Layer: base. Why: glibc adapts its mmap threshold to the sizes in use and
// trims the heap whenever more than twice that is free at its top, so a
// stream of 1 MiB messages (each buffer allocated, filled, freed) gets fresh
// pages every time, and every page faults on first touch. On the VM these
// figures were measured on, that was most of a 1 MiB echo's cost (130 MB/s
// instead of ~800 MB/s; docs/performance.md, "Bulk").
// Thread contract: any thread; the work is done once per process.
#pragma once

#include <cstddef>

namespace broach {

/// What tune_allocator() did.
enum class AllocatorTuning { kApplied, kLeftToEnvironment, kUnsupported, kAlreadyDone };

/// Sets glibc's M_MMAP_THRESHOLD to `mmap_threshold` and M_TRIM_THRESHOLD to
/// `trim_threshold` once per process. The environment wins: a threshold set by
/// MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ is left alone (the other
/// one is still set), and GLIBC_TUNABLES naming glibc.malloc leaves both.
/// Not glibc: does nothing.
AllocatorTuning tune_allocator(std::size_t mmap_threshold = std::size_t{32} << 20,
                               std::size_t trim_threshold = std::size_t{128} << 20);

}  // namespace broach
