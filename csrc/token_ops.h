// Token-sequence primitives shared by the prefix cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define RFTFAST_AVX2_DISPATCH 1
#endif

namespace rftfast {

namespace detail {

// The tail of common_prefix_length: exact, one token at a time, from position i.
inline std::size_t common_prefix_tail(const int32_t* a, const int32_t* b, std::size_t i, std::size_t n) {
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

// 16 tokens a step (four SSE2 compares; two 64-bit words elsewhere) until a step differs.
inline std::size_t common_prefix_portable(const int32_t* a, const int32_t* b, std::size_t n) {
  std::size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    const __m128i* x = reinterpret_cast<const __m128i*>(a + i);
    const __m128i* y = reinterpret_cast<const __m128i*>(b + i);
    const __m128i e01 = _mm_and_si128(_mm_cmpeq_epi32(_mm_loadu_si128(x), _mm_loadu_si128(y)),
                                      _mm_cmpeq_epi32(_mm_loadu_si128(x + 1), _mm_loadu_si128(y + 1)));
    const __m128i e23 = _mm_and_si128(_mm_cmpeq_epi32(_mm_loadu_si128(x + 2), _mm_loadu_si128(y + 2)),
                                      _mm_cmpeq_epi32(_mm_loadu_si128(x + 3), _mm_loadu_si128(y + 3)));
    if (_mm_movemask_epi8(_mm_and_si128(e01, e23)) != 0xffff) break;
  }
#else
  for (; i + 2 <= n; i += 2) {
    uint64_t x, y;
    std::memcpy(&x, a + i, 8);
    std::memcpy(&y, b + i, 8);
    if (x != y) break;
  }
#endif
  return common_prefix_tail(a, b, i, n);
}

#if defined(RFTFAST_AVX2_DISPATCH)
// 32 tokens a step (four AVX2 compares), for CPUs that have AVX2; chosen at run time.
__attribute__((target("avx2"))) inline std::size_t common_prefix_avx2(const int32_t* a, const int32_t* b,
                                                                      std::size_t n) {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i* x = reinterpret_cast<const __m256i*>(a + i);
    const __m256i* y = reinterpret_cast<const __m256i*>(b + i);
    const __m256i e01 = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_loadu_si256(x), _mm256_loadu_si256(y)),
                                         _mm256_cmpeq_epi32(_mm256_loadu_si256(x + 1), _mm256_loadu_si256(y + 1)));
    const __m256i e23 = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_loadu_si256(x + 2), _mm256_loadu_si256(y + 2)),
                                         _mm256_cmpeq_epi32(_mm256_loadu_si256(x + 3), _mm256_loadu_si256(y + 3)));
    if (_mm256_movemask_epi8(_mm256_and_si256(e01, e23)) != -1) break;
  }
  return i + common_prefix_portable(a + i, b + i, n - i);
}

inline bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

}  // namespace detail

// Number of leading positions at which `a` and `b` hold the same token id.
// The prefix cache uses it to find how far a request runs along a cached edge, so it runs at memcmp speed:
// whole vectors of tokens compared at once until one differs, then the exact position inside it.
inline std::size_t common_prefix_length(const int32_t* a, std::size_t len_a, const int32_t* b,
                                        std::size_t len_b) {
  const std::size_t n = len_a < len_b ? len_a : len_b;
#if defined(RFTFAST_AVX2_DISPATCH)
  if (detail::has_avx2()) return detail::common_prefix_avx2(a, b, n);
#endif
  return detail::common_prefix_portable(a, b, n);
}

}  // namespace rftfast
