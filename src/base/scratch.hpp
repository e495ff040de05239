// Internal header. A fixed-size byte buffer that is never zero-filled: its
// pages are touched only as far as it is written. A node keeps a few 64 KiB
// datagram buffers of which a typical datagram uses the first 1.5 KiB; a
// simulation of 10,000 nodes holds 10,000 of each (docs/membership.md).
// Thread contract: none of its own (as its owner's).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

namespace broach {

class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  explicit ScratchBuffer(std::size_t size) { resize(size); }
  /// Contents are not kept.
  void resize(std::size_t size) {
    if (size == size_) return;
    data_ = std::make_unique_for_overwrite<std::byte[]>(size);
    size_ = size;
  }
  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  operator std::span<std::byte>() { return {data_.get(), size_}; }

 private:
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_ = 0;
};

}  // namespace broach
