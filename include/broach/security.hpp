// Public header. Keys for sealed clusters (params.broach.security,
// docs/security.md).
// Thread contract: stateless functions, safe from any thread.
#pragma once

#include <string>

namespace broach {

/// A new keyring file's text holding one fresh random key (what
/// `broach keygen` prints): one base64 key per line, the first one seals.
std::string generate_keyring();

/// The key ids of a keyring file, primary first, e.g. "0x1a2b 0x3c4d".
/// Throws Error{kBadConfig} naming the file when it cannot be read.
std::string keyring_ids(const std::string& path);

}  // namespace broach
