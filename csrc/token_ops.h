// Token-sequence primitives shared by the prefix cache.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rftfast {

// Number of leading positions at which `a` and `b` hold the same token id.
// The prefix cache uses it to find how far a request runs along a cached edge.
inline std::size_t common_prefix_length(const int32_t* a, std::size_t len_a, const int32_t* b,
                                        std::size_t len_b) {
  const std::size_t n = len_a < len_b ? len_a : len_b;
  std::size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace rftfast
