// The one binding layer between Python and the C++ core: Python never reaches into C++ state.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/vector.h>

#include "radix_cache.h"
#include "token_ops.h"

namespace nb = nanobind;
using namespace nb::literals;

using TokenArray = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

namespace {

nb::dict stats_dict(const rftfast::CacheStats& s) {
  nb::dict d;
  d["lookups"] = s.lookups;
  d["hit_tokens"] = s.hit_tokens;
  d["miss_tokens"] = s.miss_tokens;
  d["nodes"] = s.nodes;
  d["cached_tokens"] = s.cached_tokens;
  d["free_blocks"] = s.free_blocks;
  d["held_blocks"] = s.held_blocks;
  d["cached_blocks"] = s.cached_blocks;
  d["evicted_blocks"] = s.evicted_blocks;
  return d;
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "rftfast C++ core (prefix cache primitives)";
  m.def(
      "common_prefix_length",
      [](TokenArray a, TokenArray b) {
        return rftfast::common_prefix_length(a.data(), a.shape(0), b.data(), b.shape(0));
      },
      nb::arg("a"), nb::arg("b"),
      "Length of the longest common prefix of two 1-D int32 token arrays (C-contiguous, on CPU).");

  // Raw results (tuples, lists, dicts); rftfast.generation.prefix_cache wraps them in named types and converts
  // token sequences to int32 arrays. Semantics: csrc/radix_cache.h.
  nb::class_<rftfast::RadixCache>(m, "RadixCache", "Radix tree over int32 token ids whose nodes own KV blocks.")
      .def(nb::init<int64_t, int64_t>(), "num_blocks"_a, "block_size"_a)
      .def_prop_ro("num_blocks", &rftfast::RadixCache::num_blocks)
      .def_prop_ro("block_size", &rftfast::RadixCache::block_size)
      .def(
          "match",
          [](rftfast::RadixCache& cache, TokenArray tokens) {
            rftfast::MatchResult r = cache.match(tokens.data(), tokens.shape(0));
            return nb::make_tuple(r.matched_len, nb::cast(r.block_ids), r.node);
          },
          // noconvert: an int64 array must not be narrowed silently; the Python wrapper range-checks and converts.
          "tokens"_a.noconvert(), "match(tokens) -> (matched_len, block_ids, node)")
      .def(
          "insert",
          [](rftfast::RadixCache& cache, TokenArray tokens, const std::vector<int64_t>& block_ids) {
            rftfast::InsertResult r = cache.insert(tokens.data(), tokens.shape(0), block_ids);
            nb::object copy = r.has_copy ? nb::object(nb::make_tuple(r.copy.src_block, r.copy.dst_block,
                                                                     r.copy.n_tokens))
                                         : nb::none();
            return nb::make_tuple(r.node, copy);
          },
          "tokens"_a.noconvert(), "block_ids"_a,
          "insert(tokens, block_ids) -> (node, (src_block, dst_block, n_tokens) | None)")
      .def("allocate", &rftfast::RadixCache::allocate, "n"_a)
      .def("release", &rftfast::RadixCache::release, "block_ids"_a)
      .def("lock", &rftfast::RadixCache::lock, "node"_a)
      .def("unlock", &rftfast::RadixCache::unlock, "node"_a)
      .def("evict", &rftfast::RadixCache::evict, "n_blocks"_a)
      .def("stats", [](const rftfast::RadixCache& cache) { return stats_dict(cache.stats()); })
      .def("memory_bytes", &rftfast::RadixCache::memory_bytes)
      .def("check_invariants", &rftfast::RadixCache::check_invariants);
}
